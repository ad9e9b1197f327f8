package cfblock

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// walkTop reads `dir {...}` from input and walks its block, recording each
// subdirective with its arguments (all of them, any count).
func walkTop(t *testing.T, input string, repeatable ...string) ([]string, error) {
	t.Helper()
	d := caddyfile.NewTestDispenser(input)
	d.Next()
	var got []string
	err := Walk(d, "dir", func(name string) error {
		got = append(got, strings.Join(append([]string{name}, d.RemainingArgs()...), " "))
		return nil
	}, repeatable...)
	return got, err
}

func TestWalk(t *testing.T) {
	for name, tc := range map[string]struct {
		in         string
		repeatable []string
		want       []string
		err        string
	}{
		"each once":       {in: "dir {\n a 1\n b 2 3\n c\n}", want: []string{"a 1", "b 2 3", "c"}},
		"no block":        {in: "dir", want: nil},
		"empty block":     {in: "dir {\n}", want: nil},
		"next directive":  {in: "dir\nother {\n a 1\n}", want: nil},
		"duplicate":       {in: "dir {\n a 1\n b 2\n a 3\n}", err: `dir: duplicate subdirective "a", at Testfile:4`},
		"repeatable":      {in: "dir {\n a 1\n a 2\n b 3\n}", repeatable: []string{"a"}, want: []string{"a 1", "a 2", "b 3"}},
		"others not":      {in: "dir {\n a 1\n b 2\n b 3\n}", repeatable: []string{"a"}, err: `dir: duplicate subdirective "b", at Testfile:4`},
		"same name later": {in: "dir {\n a 1\n}\ndir {\n a 2\n}", want: []string{"a 1"}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := walkTop(t, tc.in, tc.repeatable...)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestWalkNested walks a block inside a block: the inner walk has its own
// duplicates and name, and the outer walk goes on after the inner block.
func TestWalkNested(t *testing.T) {
	run := func(in string) ([]string, error) {
		d := caddyfile.NewTestDispenser(in)
		d.Next()
		var got []string
		err := Walk(d, "dir", func(name string) error {
			if name != "inner" {
				v, err := One(d)
				got = append(got, name+"="+v)
				return err
			}
			label, err := One(d)
			if err != nil {
				return err
			}
			return Walk(d, "dir: inner "+label, func(sub string) error {
				v, err := One(d)
				got = append(got, label+"."+sub+"="+v)
				return err
			})
		}, "inner")
		return got, err
	}

	got, err := run("dir {\n a 1\n inner x {\n a 2\n b 3\n }\n inner y {\n a 4\n }\n b 5\n}")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a=1", "x.a=2", "x.b=3", "y.a=4", "b=5"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}

	_, err = run("dir {\n inner x {\n a 1\n a 2\n }\n}")
	if want := `dir: inner x: duplicate subdirective "a", at Testfile:4`; err == nil || err.Error() != want {
		t.Errorf("inner duplicate: error = %v, want %q", err, want)
	}
	_, err = run("dir {\n a 1\n inner x {\n }\n a 2\n}")
	if want := `dir: duplicate subdirective "a", at Testfile:5`; err == nil || err.Error() != want {
		t.Errorf("outer duplicate after inner block: error = %v, want %q", err, want)
	}
}

func TestWalkStopsAtFirstError(t *testing.T) {
	d := caddyfile.NewTestDispenser("dir {\n a 1\n b 2\n}")
	d.Next()
	boom := errors.New("boom")
	calls := 0
	err := Walk(d, "dir", func(string) error {
		calls++
		return boom
	})
	if err != boom || calls != 1 {
		t.Errorf("err = %v after %d calls, want boom after 1", err, calls)
	}
}

func TestValues(t *testing.T) {
	run := func(in string) ([]string, error) {
		d := caddyfile.NewTestDispenser(in)
		d.Next()
		var got []string
		err := Values(d, "dir", func(name, v string) error {
			if name == "bad" {
				return Unknown(d, "dir", name)
			}
			got = append(got, name+"="+v)
			return nil
		})
		return got, err
	}
	got, err := run("dir {\n a 1\n b 2\n}")
	if want := []string{"a=1", "b=2"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
	for in, want := range map[string]string{
		"dir {\n a 1\n a 2\n}":   `dir: duplicate subdirective "a", at Testfile:3`,
		"dir {\n a\n}":           "a: wrong argument count or unexpected line ending after 'a', at Testfile:2",
		"dir {\n bad 1 2\n}":     "bad: wrong argument count or unexpected line ending after '2', at Testfile:2",
		"dir {\n a 1\n bad 1\n}": `dir: unknown subdirective "bad", at Testfile:3`,
	} {
		if _, err := run(in); err == nil || err.Error() != want {
			t.Errorf("%q: error = %v, want %q", in, err, want)
		}
	}
}

// sub returns a dispenser on the first subdirective of `dir {\n <line>\n}`.
func sub(line string) *caddyfile.Dispenser {
	d := caddyfile.NewTestDispenser("dir {\n " + line + "\n}")
	d.Next()
	d.NextBlock(0)
	return d
}

func TestOne(t *testing.T) {
	v, err := One(sub("zone a"))
	if err != nil || v != "a" {
		t.Errorf("One(zone a) = %q, %v", v, err)
	}
	for _, line := range []string{"zone", "zone a b", "zone {\n a\n }"} {
		_, err := One(sub(line))
		if err == nil || !strings.HasPrefix(err.Error(), "zone: wrong argument count") || !strings.HasSuffix(err.Error(), "at Testfile:2") {
			t.Errorf("One(%q): error = %v, want zone: wrong argument count ... at Testfile:2", line, err)
		}
	}
}

func TestArgs(t *testing.T) {
	for _, tc := range []struct {
		line     string
		min, max int
		want     []string
	}{
		{"caller a b", 2, 4, []string{"a", "b"}},
		{"caller a b c d", 2, 4, []string{"a", "b", "c", "d"}},
		{"servers a b c d e", 1, -1, []string{"a", "b", "c", "d", "e"}},
		{"caller a", 2, 4, nil},
		{"caller a b c d e", 2, 4, nil},
		{"servers", 1, -1, nil},
	} {
		got, err := Args(sub(tc.line), tc.min, tc.max)
		if tc.want == nil {
			if err == nil || !strings.Contains(err.Error(), "wrong argument count") || !strings.HasPrefix(err.Error(), strings.Fields(tc.line)[0]+": ") {
				t.Errorf("Args(%q, %d, %d): error = %v, want an argument error naming the subdirective", tc.line, tc.min, tc.max, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("Args(%q, %d, %d) = %q, %v; want %q", tc.line, tc.min, tc.max, got, err, tc.want)
		}
	}
}

func TestFlag(t *testing.T) {
	if err := Flag(sub("zone_header")); err != nil {
		t.Errorf("Flag(zone_header) = %v", err)
	}
	if err := Flag(sub("zone_header yes")); err == nil || !strings.HasPrefix(err.Error(), "zone_header: wrong argument count") {
		t.Errorf("Flag(zone_header yes) = %v, want an argument error naming zone_header", err)
	}
}

func TestUnknown(t *testing.T) {
	d := sub("colour blue")
	if got, want := Unknown(d, "neo_echo", d.Val()).Error(), `neo_echo: unknown subdirective "colour", at Testfile:2`; got != want {
		t.Errorf("Unknown = %q, want %q", got, want)
	}
}

// FuzzWalk: on any input Walk does not panic, calls each at most once per
// name except for the repeatable one, and a nested walk leaves the outer
// walk in step.
func FuzzWalk(f *testing.F) {
	for _, s := range []string{
		"dir {\n a 1\n b 2 3\n}",
		"dir {\n a 1\n a 2\n}",
		"dir {\n r 1\n r 2\n n x {\n a 1\n }\n}",
		"dir {\n n {\n n {\n a\n }\n }\n}",
		"dir {\n}",
		"dir a b {\n c {\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		d := caddyfile.NewTestDispenser(in)
		d.Next()
		d.RemainingArgs()
		count := map[string]int{}
		var each func(name string) error
		each = func(name string) error {
			count[name]++
			if name != "r" && count[name] > 1 {
				t.Fatalf("%q walked %d times in %q", name, count[name], in)
			}
			d.RemainingArgs()
			if name == "n" {
				return Walk(d, "dir: n", func(string) error {
					d.RemainingArgs()
					return nil
				})
			}
			return nil
		}
		_ = Walk(d, "dir", each, "r")
	})
}
