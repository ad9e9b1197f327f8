//go:build coraza.rule.multiphase_evaluation

package wafaccel

// skipEnabled: with multiphase evaluation a rule runs in several phases, so
// removing it at the start of one phase could hide a match in a later one.
const skipEnabled = false
