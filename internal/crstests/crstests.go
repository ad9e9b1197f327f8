// Package crstests reads the OWASP CRS v4 regression tests (go-ftw YAML)
// shipped in the coraza-coreruleset module's tests/ folder and turns their
// stages into requests, for the WAF tests of modules/wafaccel and
// modules/edgewaf.
package crstests

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/corazawaf/coraza/v3/types"
	"gopkg.in/yaml.v3"
)

// File is one go-ftw test file.
type File struct {
	RuleID int    `yaml:"rule_id"`
	Tests  []Test `yaml:"tests"`
}

// Test is one test: stages sent in turn.
type Test struct {
	TestID int     `yaml:"test_id"`
	Desc   string  `yaml:"desc"`
	Stages []Stage `yaml:"stages"`
}

// Stage is one request and its expected outcome.
type Stage struct {
	Input  Input  `yaml:"input"`
	Output Output `yaml:"output"`
}

// Input is a stage's request.
type Input struct {
	Method              *string           `yaml:"method"`
	URI                 *string           `yaml:"uri"`
	Version             *string           `yaml:"version"`
	Headers             map[string]string `yaml:"headers"`
	Data                *string           `yaml:"data"`
	EncodedRequest      string            `yaml:"encoded_request"`
	AutocompleteHeaders *bool             `yaml:"autocomplete_headers"`
}

// Output is a stage's expectation.
type Output struct {
	Status      int  `yaml:"status"`
	ExpectError bool `yaml:"expect_error"`
	Log         struct {
		ExpectIDs   []int `yaml:"expect_ids"`
		NoExpectIDs []int `yaml:"no_expect_ids"`
	} `yaml:"log"`
	ResponseContains string `yaml:"response_contains"`
}

// Case is one test with a stable name (rule-test, e.g. 942100-1).
type Case struct {
	Name string
	Test Test
}

// Dir returns the regression tests' folder in the module cache.
func Dir() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/corazawaf/coraza-coreruleset/v4").Output()
	if err != nil {
		return "", fmt.Errorf("locating coraza-coreruleset: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "tests")
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("CRS regression tests not found: %w", err)
	}
	return dir, nil
}

// Load reads every test, sorted by name.
func Load() ([]Case, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	var cases []Case
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var f File
		if err := yaml.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, tc := range f.Tests {
			cases = append(cases, Case{Name: fmt.Sprintf("%d-%d", f.RuleID, tc.TestID), Test: tc})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(cases, func(i, j int) bool { return cases[i].Name < cases[j].Name })
	return cases, nil
}

// Request is a request as go-ftw would send it.
type Request struct {
	Method, URI, Version string
	Headers              [][2]string
	Body                 []byte
}

// Build turns a stage input into a request. A non-empty reason means the
// stage cannot be run in process.
func Build(in Input) (Request, string) {
	if in.EncodedRequest != "" {
		raw, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(in.EncodedRequest, "\n", ""))
		if err != nil {
			return Request{}, "undecodable encoded_request"
		}
		hr, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return Request{}, "encoded_request is not an HTTP/1.x request Go can parse"
		}
		r := Request{Method: hr.Method, URI: hr.RequestURI, Version: hr.Proto}
		for k, vs := range hr.Header {
			for _, v := range vs {
				r.Headers = append(r.Headers, [2]string{k, v})
			}
		}
		if hr.Host != "" {
			r.Headers = append(r.Headers, [2]string{"Host", hr.Host})
		}
		if len(hr.TransferEncoding) > 0 {
			r.Headers = append(r.Headers, [2]string{"Transfer-Encoding", strings.Join(hr.TransferEncoding, ",")})
		}
		r.Body, _ = io.ReadAll(hr.Body)
		return r, ""
	}
	r := Request{Method: "GET", URI: "/", Version: "HTTP/1.1"}
	if in.Method != nil {
		r.Method = *in.Method
	}
	if in.URI != nil {
		r.URI = *in.URI
	}
	if in.Version != nil {
		r.Version = *in.Version
	}
	keys := make([]string, 0, len(in.Headers))
	for k := range in.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	hasCL := false
	for _, k := range keys {
		r.Headers = append(r.Headers, [2]string{k, in.Headers[k]})
		hasCL = hasCL || strings.EqualFold(k, "Content-Length")
	}
	if in.Data != nil {
		r.Body = []byte(*in.Data)
	}
	autocomplete := in.AutocompleteHeaders == nil || *in.AutocompleteHeaders
	if autocomplete && !hasCL && len(r.Body) > 0 {
		r.Headers = append(r.Headers, [2]string{"Content-Length", fmt.Sprint(len(r.Body))})
	}
	return r, ""
}

// Send feeds the request's phases 1 and 2 to tx (connection, request
// line, headers, body), stopping at an interruption, and returns it.
func Send(tx types.Transaction, r Request) *types.Interruption {
	tx.ProcessConnection("127.0.0.1", 40000, "127.0.0.1", 80)
	tx.ProcessURI(r.URI, r.Method, r.Version)
	for _, h := range r.Headers {
		tx.AddRequestHeader(h[0], h[1])
		if strings.EqualFold(h[0], "Host") {
			tx.SetServerName(h[1])
		}
	}
	if it := tx.ProcessRequestHeaders(); it != nil {
		return it
	}
	if len(r.Body) > 0 {
		if it, _, _ := tx.WriteRequestBody(r.Body); it != nil {
			return it
		}
	}
	it, _ := tx.ProcessRequestBody()
	return it
}
