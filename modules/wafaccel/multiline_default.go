//go:build !coraza.rule.no_regex_multiline

package wafaccel

// multilinePrefix mirrors Coraza's default: @rx patterns run in dot-all and
// multi-line mode.
const multilinePrefix = "(?sm)"
