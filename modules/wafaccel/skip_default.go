//go:build !coraza.rule.multiphase_evaluation

package wafaccel

// skipEnabled: rule skipping assumes each rule is evaluated in its own phase
// only, which holds unless Coraza is built with multiphase evaluation.
const skipEnabled = true
