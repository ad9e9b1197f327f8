//go:build coraza.rule.no_regex_multiline

package wafaccel

// multilinePrefix mirrors Coraza under the coraza.rule.no_regex_multiline
// build tag: @rx patterns run in dot-all mode only.
const multilinePrefix = "(?s)"
