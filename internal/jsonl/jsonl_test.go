package jsonl

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

type rule string

// parseWord accepts {"w": "..."}: an empty word is flagged, "bad" refuses
// the file, "skip" skips the row.
func parseWord(raw []byte) (string, []Problem[rule]) {
	var v struct{ W *string }
	if p := Decode(raw, &v, rule("bad_json"), rule("missing_field")); p != nil {
		return "", p
	}
	if v.W == nil {
		return "", []Problem[rule]{{Rule: "missing_field", Detail: `field "w" is missing`}}
	}
	switch *v.W {
	case "":
		return "", []Problem[rule]{{Rule: "empty"}}
	case "bad":
		return "", []Problem[rule]{{Rule: "bad"}}
	case "skip":
		return "", []Problem[rule]{{Rule: "skip"}}
	}
	return *v.W, nil
}

func actionOf(r rule) Action {
	switch r {
	case "empty":
		return Flag
	case "skip":
		return Skip
	}
	return Refuse
}

func readAll(t *testing.T, in io.Reader, opts Options) ([]Row[string, rule], *Reader[string, rule], error) {
	t.Helper()
	rd, err := NewReader(in, parseWord, actionOf, opts)
	if err != nil {
		t.Fatal(err)
	}
	var rows []Row[string, rule]
	for {
		row, err := rd.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return rows, rd, err
		}
		rows = append(rows, row)
	}
}

func TestReader(t *testing.T) {
	const in = `{"w":"a"}` + "\n\n" + `{"w":""}` + "\n" + `{"w":"skip"}` + "\n" + `[1]` + "\n" + `{"w":"b"}` + "\n" + `{"w":3}` + "\n"
	for _, tc := range []struct {
		name  string
		opts  Options
		lines []int // of the rows returned
		err   string
		rows  int // non-blank lines read
	}{
		{"stops at the refusal", Options{}, []int{1, 3}, "line 5: bad_json: the line is a JSON array, not an object", 4},
		{"keep reading counts all", Options{KeepReading: true}, []int{1, 3, 6}, "line 5: bad_json", 6},
		{"skip invalid", Options{SkipInvalid: true}, []int{1, 3, 6}, "", 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gz bytes.Buffer
			w := gzip.NewWriter(&gz)
			w.Write([]byte(in))
			w.Close()
			for _, src := range []io.Reader{strings.NewReader(in), &gz} {
				rows, rd, err := readAll(t, src, tc.opts)
				var lines []int
				for _, r := range rows {
					lines = append(lines, r.Line)
				}
				if !slices.Equal(lines, tc.lines) || rd.Rows != tc.rows {
					t.Fatalf("lines %v, rows %d; want %v, %d", lines, rd.Rows, tc.lines, tc.rows)
				}
				if tc.err == "" && err != nil || tc.err != "" && (!errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.err)) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				if len(rows[1].Flags) != 1 || rows[1].Flags[0] != "empty" {
					t.Fatalf("line 3 flags %v, want [empty]", rows[1].Flags)
				}
				if tc.opts.KeepReading && (rd.Counts["missing_field"] != 1 || rd.ProblemCount() != 4) {
					t.Fatalf("counts %v, want every problem counted", rd.Counts)
				}
			}
		})
	}
}

func TestTooManyLines(t *testing.T) {
	defer func(n int) { maxLines = n }(maxLines)
	maxLines = 3
	_, _, err := readAll(t, strings.NewReader("\n\n\n"+`{"w":"a"}`), Options{})
	if err == nil || !strings.Contains(err.Error(), "line 4: a file may have at most 3 lines") {
		t.Fatalf("Next() = %v, want the line limit", err)
	}
}
