package wafaccel

import (
	"slices"
	"testing"
)

func TestReadFlow(t *testing.T) {
	for _, c := range []struct {
		raw     string
		skip    int
		skipAll bool
		removes []ruleRemoval
	}{
		{raw: `SecRule REQUEST_HEADERS:Content-Type "@rx ^application/json" "id:920539,phase:2,pass,t:none,nolog,skip:1"`, skip: 1},
		{raw: `SecAction "id:1,phase:1,pass,nolog,ctl:ruleRemoveById=942100,ctl:ruleRemoveById=10-20,ctl:ruleRemoveByTag=attack-sqli"`,
			removes: []ruleRemoval{{lo: 942100, hi: 942100}, {lo: 10, hi: 20}, {tag: "attack-sqli"}}},
		{raw: `SecAction "id:1,phase:1,pass,nolog,ctl:ruleRemoveTargetById=942100;ARGS:a,ctl:ruleEngine=Off"`},
		{raw: `SecAction "id:1,phase:1,pass,nolog,'ctl:ruleRemoveByMsg=x y'"`, removes: []ruleRemoval{{byMsg: true}}},
		{raw: `SecAction "id:1,phase:1,pass,nolog,ctl:ruleRemoveById=%{tx.x}"`, removes: []ruleRemoval{{any: true}}},
		{raw: `SecRule ARGS "@rx a" "id:1,phase:2,pass,skip:2,skipAfter:END"`, skip: 2, skipAll: true},
		{raw: "SecRule ARGS \"@rx a\" \"id:1,phase:2,pass,chain\" \nSecRule ARGS \"@rx b\" \"skip:3\"", skip: 3},
		{raw: `SecRule ARGS "@rx skip" "id:1,phase:2,pass,msg:'ctl and skip in text'"`},
		{raw: `SecRule ARGS "@rx a" "id:1,phase:2,pass,skip:x"`, skipAll: true},
		{raw: `not a rule with skip:1`, skipAll: true},
	} {
		var e flowEntry
		readFlow(c.raw, &e)
		if e.skip != c.skip || e.skipAll != c.skipAll || !slices.Equal(e.removes, c.removes) {
			t.Errorf("%s: skip %d, all %v, removes %+v; want %d, %v, %+v", c.raw, e.skip, e.skipAll, e.removes, c.skip, c.skipAll, c.removes)
		}
	}
}

// TestProtectedWindows checks the windows on a small rule sequence: the
// rules after a skip:N rule are protected up to the N-th one that no
// removal can take away (a removal that also takes the skip rule away does
// not count); phase 2 rules do not count in phase 1.
func TestProtectedWindows(t *testing.T) {
	seq := &flowSeq{entries: []flowEntry{
		{id: 900970, phase: 1},                             // the neoSkip rule
		{id: 10, phase: 1, skip: 2, tags: []string{"crs"}}, // skip rule
		{id: 11, phase: 1},
		{id: 12, phase: 2},
		{id: 13, phase: 1, tags: []string{"x"}},
		{id: 14, phase: 1},
		{id: 15, phase: 1},
	}}
	seq.removals = []ruleRemoval{{lo: 11, hi: 11}, {tag: "crs"}}
	var got []int
	seq.protectedIDs(0, 1, nil, func(id int) { got = append(got, id) })
	// 11 may be removed (not counted), 13 counts, 14 counts: 11, 13, 14;
	// 12 is of phase 2 (protecting it is harmless but the walk skips it).
	if want := []int{11, 13, 14}; !slices.Equal(got, want) {
		t.Errorf("protected %v, want %v", got, want)
	}
	got = nil
	seq.protectedIDs(0, 1, func(id int) bool { return id == 13 }, func(id int) { got = append(got, id) })
	if want := []int{11, 13, 14, 15}; !slices.Equal(got, want) {
		t.Errorf("with 13 excluded: protected %v, want %v", got, want)
	}
}
