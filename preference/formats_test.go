package preference

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// readAll reads every record and returns them with the reader; a refused
// file ends the reading like the end of the file.
func readAll(t testing.TB, input string, f Format, opts ReaderOptions) ([]Record, *Reader) {
	t.Helper()
	rd, err := NewReader(strings.NewReader(input), f, opts)
	if err != nil {
		t.Fatal(err)
	}
	var recs []Record
	for {
		r, err := rd.Next()
		if errors.Is(err, io.EOF) || errors.Is(err, ErrRefused) {
			if errors.Is(err, ErrRefused) != rd.Refused() {
				t.Fatalf("Next returned %v with Refused() = %v", err, rd.Refused())
			}
			return recs, rd
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
}

func TestRules(t *testing.T) {
	long := strings.Repeat("x", 40)
	ranking := func(k int) string {
		resp, order := make([]string, k), make([]string, k)
		for i := range k {
			resp[i], order[i] = fmt.Sprintf(`"r%d"`, i), fmt.Sprint(i)
		}
		return `{"prompt":"p","responses":[` + strings.Join(resp, ",") + `],"ranking":[` + strings.Join(order, ",") + `],"labeler":"l"}`
	}
	for _, tc := range []struct {
		name   string
		format Format
		line   string
		rule   Rule // "" = accepted clean
		action Action
	}{
		{"ranking ok", FormatRanking, `{"prompt":"p","responses":["a","b","c"],"ranking":[2,0,1],"labeler":"l"}`, "", ""},
		{"pairwise ok", FormatPairwise, `{"prompt":"p","chosen":"a","rejected":"b"}`, "", ""},
		{"hh ok", FormatHH, `{"chosen":"\n\nHuman: hi\n\nAssistant: hello","rejected":"\n\nHuman: hi\n\nAssistant: go away"}`, "", ""},
		{"bad json", FormatRanking, `{"prompt":`, RuleBadJSON, ActionRefuse},
		{"not an object", FormatPairwise, `[1,2]`, RuleBadJSON, ActionRefuse},
		{"invalid utf8", FormatPairwise, "{\"prompt\":\"\xff\",\"chosen\":\"a\",\"rejected\":\"b\"}", RuleBadJSON, ActionRefuse},
		{"missing labeler", FormatRanking, `{"prompt":"p","responses":["a","b"],"ranking":[0,1]}`, RuleMissingField, ActionRefuse},
		{"missing rejected", FormatPairwise, `{"prompt":"p","chosen":"a"}`, RuleMissingField, ActionRefuse},
		{"wrong type", FormatPairwise, `{"prompt":"p","chosen":1,"rejected":"b"}`, RuleMissingField, ActionRefuse},
		{"hh missing", FormatHH, `{"chosen":"x"}`, RuleMissingField, ActionRefuse},
		{"short ranking", FormatRanking, `{"prompt":"p","responses":["a","b","c"],"ranking":[0,1],"labeler":"l"}`, RuleNotPermutation, ActionRefuse},
		{"repeated index", FormatRanking, `{"prompt":"p","responses":["a","b"],"ranking":[0,0],"labeler":"l"}`, RuleNotPermutation, ActionRefuse},
		{"index out of range", FormatRanking, `{"prompt":"p","responses":["a","b"],"ranking":[0,2],"labeler":"l"}`, RuleNotPermutation, ActionRefuse},
		{"one response", FormatRanking, `{"prompt":"p","responses":["a"],"ranking":[0],"labeler":"l"}`, RuleNotPermutation, ActionRefuse},
		{"duplicate responses", FormatRanking, `{"prompt":"p","responses":["a","b","a"],"ranking":[0,1,2],"labeler":"l"}`, RuleDuplicateResponses, ActionRefuse},
		{"chosen is rejected", FormatPairwise, `{"prompt":"p","chosen":"a","rejected":"a"}`, RuleIdenticalPair, ActionRefuse},
		{"hh identical", FormatHH, `{"chosen":"\n\nHuman: x\n\nAssistant: y","rejected":"\n\nHuman: x\n\nAssistant: y"}`, RuleIdenticalPair, ActionRefuse},
		{"hh no assistant", FormatHH, `{"chosen":"\n\nHuman: x","rejected":"\n\nHuman: y"}`, RuleBadTranscript, ActionRefuse},
		{"empty prompt", FormatPairwise, `{"prompt":"  ","chosen":"a","rejected":"b"}`, RuleEmptyPrompt, ActionRefuse},
		{"empty last human turn", FormatHH, `{"chosen":"\n\nHuman:  \n\nAssistant: a","rejected":"\n\nHuman:  \n\nAssistant: b"}`, RuleEmptyPrompt, ActionRefuse},
		{"too long", FormatPairwise, `{"prompt":"p","chosen":"` + long + `","rejected":"b"}`, RuleTooLong, ActionSkip},
		{"empty response", FormatPairwise, `{"prompt":"p","chosen":" ","rejected":"b"}`, RuleEmptyResponse, ActionFlag},
		{"NUL in prompt", FormatRanking, `{"prompt":"p\u0000","responses":["a","b"],"ranking":[0,1],"labeler":"l"}`, RuleNUL, ActionRefuse},
		{"NUL in a response", FormatRanking, `{"prompt":"p","responses":["a","\u0000b"],"ranking":[0,1],"labeler":"l"}`, RuleNUL, ActionRefuse},
		{"NUL in labeler", FormatRanking, `{"prompt":"p","responses":["a","b"],"ranking":[0,1],"labeler":"l\u0000"}`, RuleNUL, ActionRefuse},
		{"NUL in chosen", FormatPairwise, `{"prompt":"p","chosen":"a\u0000","rejected":"b"}`, RuleNUL, ActionRefuse},
		{"NUL in pairwise labeler", FormatPairwise, `{"prompt":"p","chosen":"a","rejected":"b","labeler":"\u0000"}`, RuleNUL, ActionRefuse},
		{"NUL in HH transcript", FormatHH, `{"chosen":"\n\nHuman: hi\n\nAssistant: a\u0000","rejected":"\n\nHuman: hi\n\nAssistant: b"}`, RuleNUL, ActionRefuse},
		{"escaped backslash is no NUL", FormatPairwise, `{"prompt":"p\\u0000","chosen":"a","rejected":"b"}`, "", ""},
		{"empty labeler", FormatRanking, `{"prompt":"p","responses":["a","b"],"ranking":[0,1],"labeler":""}`, RuleEmptyLabeler, ActionRefuse},
		{"blank labeler", FormatRanking, `{"prompt":"p","responses":["a","b"],"ranking":[0,1],"labeler":" \t"}`, RuleEmptyLabeler, ActionRefuse},
		{"empty pairwise labeler", FormatPairwise, `{"prompt":"p","chosen":"a","rejected":"b","labeler":""}`, RuleEmptyLabeler, ActionRefuse},
		{"null pairwise labeler", FormatPairwise, `{"prompt":"p","chosen":"a","rejected":"b","labeler":null}`, "", ""},
		{"K at the limit", FormatRanking, ranking(16), "", ""},
		{"K over the limit", FormatRanking, ranking(17), RuleTooManyResponses, ActionRefuse},
		{"hh prompt mismatch", FormatHH, `{"chosen":"\n\nHuman: a\n\nAssistant: b\n\nAssistant: c","rejected":"\n\nHuman: a\n\nAssistant: d"}`, RulePromptMismatch, ActionFlag},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, rd := readAll(t, "\n"+tc.line+"\n", tc.format, ReaderOptions{MaxChars: 30})
			if tc.rule == "" {
				if len(rd.Problems) != 0 || len(recs) != 1 {
					t.Fatalf("problems %v, records %d; want one clean record", rd.Problems, len(recs))
				}
				return
			}
			if len(rd.Problems) != 1 || rd.Problems[0].Rule != tc.rule || rd.Problems[0].Line != 2 {
				t.Fatalf("problems %v, want one %s on line 2", rd.Problems, tc.rule)
			}
			if got := tc.rule.Action(); got != tc.action {
				t.Errorf("action %q, want %q", got, tc.action)
			}
			if rd.Refused() != (tc.action == ActionRefuse) {
				t.Errorf("Refused() = %v with action %s", rd.Refused(), tc.action)
			}
			kept := len(recs) == 1
			if kept != (tc.action == ActionFlag) {
				t.Errorf("record kept = %v with action %s", kept, tc.action)
			}
			if kept && !slices.Equal(recs[0].Flags, []Rule{tc.rule}) {
				t.Errorf("flags %v, want [%s]", recs[0].Flags, tc.rule)
			}
		})
	}
}

func TestRecordsKeepShownOrder(t *testing.T) {
	recs, _ := readAll(t, `{"prompt":"p","responses":["a","b","c"],"ranking":[2,0,1],"labeler":"l"}`, FormatRanking, ReaderOptions{})
	r := recs[0]
	if !slices.Equal(r.Responses, []string{"a", "b", "c"}) || !slices.Equal(r.Ranks, []int{2, 3, 1}) || !r.OrderKnown {
		t.Fatalf("record %+v: responses must stay in shown order with ranks [2 3 1]", r)
	}
	recs, _ = readAll(t, `{"prompt":"p","chosen":"a","rejected":"b"}`, FormatPairwise, ReaderOptions{Labeler: "imp"})
	if recs[0].OrderKnown || recs[0].Labeler != "imp" {
		t.Fatalf("pairwise record %+v: order unknown and default labeler expected", recs[0])
	}
}

func TestSkipInvalidAndGzip(t *testing.T) {
	in := `{"prompt":"p","chosen":"a","rejected":"b"}
not json
{"prompt":"p","chosen":"c","rejected":"d"}
`
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte(in))
	w.Close()
	rd, err := NewReader(&gz, FormatPairwise, ReaderOptions{SkipInvalid: true})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		_, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 || rd.Refused() || len(rd.Problems) != 1 || rd.Problems[0].Line != 2 || rd.Rows != 3 {
		t.Fatalf("records %d, refused %v, problems %v, rows %d", n, rd.Refused(), rd.Problems, rd.Rows)
	}
}

// TestStopsAtFirstRefusal: by default the reader stops at the first
// problem that refuses the file (nothing after it is read); KeepReading (a
// dry run) reads on and counts every problem.
func TestStopsAtFirstRefusal(t *testing.T) {
	in := `{"prompt":"p","chosen":"a","rejected":"b"}
{"prompt":"p","chosen":"x","rejected":"x"}
{"prompt":"q","chosen":"a","rejected":"b"}
not json
`
	rd, err := NewReader(strings.NewReader(in), FormatPairwise, ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Next(); err != nil {
		t.Fatalf("line 1: %v", err)
	}
	_, err = rd.Next()
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "line 2: identical_pair") {
		t.Fatalf("line 2: Next() = %v, want a refusal naming line 2", err)
	}
	if _, err2 := rd.Next(); !errors.Is(err2, ErrRefused) {
		t.Fatalf("after the refusal Next() = %v, want the refusal again", err2)
	}
	if rd.Rows != 2 || !rd.Refused() || len(rd.Problems) != 1 {
		t.Fatalf("read %d rows, refused %v, problems %v: want reading stopped at line 2", rd.Rows, rd.Refused(), rd.Problems)
	}

	recs, rd := readAll(t, in, FormatPairwise, ReaderOptions{KeepReading: true})
	if rd.Rows != 4 || len(recs) != 2 || !rd.Refused() || rd.ProblemCount() != 2 ||
		rd.Counts[RuleIdenticalPair] != 1 || rd.Counts[RuleBadJSON] != 1 {
		t.Fatalf("keep reading: %d rows, %d records, refused %v, counts %v", rd.Rows, len(recs), rd.Refused(), rd.Counts)
	}
}

// TestRefusalAlwaysKept: a refusal after MaxProblems flagged rows is still
// listed, so the user learns where the file was refused.
func TestRefusalAlwaysKept(t *testing.T) {
	in := strings.Repeat(`{"prompt":"p","chosen":" ","rejected":"b"}`+"\n", 5) + "not json\n"
	_, rd := readAll(t, in, FormatPairwise, ReaderOptions{MaxProblems: 3})
	if len(rd.Problems) != 4 || rd.Problems[3].Line != 6 || rd.Problems[3].Rule != RuleBadJSON || rd.Counts[RuleEmptyResponse] != 5 {
		t.Fatalf("problems %v, counts %v; want 3 flags and the refusal on line 6", rd.Problems, rd.Counts)
	}
}

func TestReaderOptionsChecked(t *testing.T) {
	for _, opts := range []ReaderOptions{{MaxK: 1}, {MaxK: MaxMaxK + 1}, {Labeler: "  "}, {Labeler: "a\x00"}} {
		if _, err := NewReader(strings.NewReader(""), FormatPairwise, opts); err == nil {
			t.Errorf("NewReader accepted %+v", opts)
		}
	}
}

// TestProblemsStayBounded streams a small gzip of two million "{}" lines
// (four problems each) through the reader: it keeps the first problems and
// counts the rest, so memory does not grow with the file.
func TestProblemsStayBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("reads two million lines")
	}
	const lines = 2_000_000
	var gz bytes.Buffer
	w, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	chunk := bytes.Repeat([]byte("{}\n"), 10_000)
	for range lines / 10_000 {
		w.Write(chunk)
	}
	w.Close()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rd, err := NewReader(bytes.NewReader(gz.Bytes()), FormatRanking, ReaderOptions{KeepReading: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Next(); !errors.Is(err, ErrRefused) {
		t.Fatalf("Next() = %v, want the file refused", err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(rd)
	if rd.Rows != lines || rd.Counts[RuleMissingField] != 4*lines || rd.ProblemCount() != 4*lines {
		t.Fatalf("read %d rows, counts %v; want %d rows with 4 missing fields each", rd.Rows, rd.Counts, lines)
	}
	if len(rd.Problems) != DefaultMaxProblems || rd.Problems[0].Line != 1 || rd.Problems[DefaultMaxProblems-1].Line != DefaultMaxProblems/4 {
		t.Fatalf("kept %d problems (first %v); want the first %d", len(rd.Problems), rd.Problems[0], DefaultMaxProblems)
	}
	// The reader's buffers take a few MiB; a list of every problem would take
	// hundreds.
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 16<<20 {
		t.Errorf("the heap grew by %d MiB reading %d bad lines", grew>>20, lines)
	}

	// Without KeepReading the first line ends the reading.
	rd, _ = NewReader(bytes.NewReader(gz.Bytes()), FormatRanking, ReaderOptions{})
	if _, err := rd.Next(); !errors.Is(err, ErrRefused) || rd.Rows != 1 {
		t.Fatalf("Next() = %v after %d rows, want a refusal at row 1", err, rd.Rows)
	}
}

// hhSample is the real HH-RLHF sample shared with the project.
var hhSample = filepath.Join("..", "..", "shared", "data", "hh-rlhf", "harmless-base-test.jsonl.gz")

func TestHHSample(t *testing.T) {
	f, err := os.Open(hhSample)
	if err != nil {
		t.Skipf("HH-RLHF sample not available: %v", err)
	}
	defer f.Close()
	rd, err := NewReader(f, FormatHH, ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	flagged := map[Rule][]int{}
	n := 0
	for {
		r, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		if !strings.HasSuffix(r.Prompt, "\n\nAssistant:") || !strings.HasPrefix(r.Prompt, "\n\nHuman:") {
			t.Fatalf("line %d: prompt does not run from the first human turn to an assistant tag", r.Line)
		}
		for _, fl := range r.Flags {
			flagged[fl] = append(flagged[fl], r.Line)
		}
	}
	if rd.Refused() || n != 2312 || rd.Rows != 2312 {
		t.Fatalf("read %d of %d rows, refused %v: %v", n, rd.Rows, rd.Refused(), rd.Problems)
	}
	// Counted independently with a Python script over the same file (see
	// the issue notes): 5 rows whose transcripts do not share their prompt,
	// 4 whose chosen response is blank.
	if got := flagged[RulePromptMismatch]; !slices.Equal(got, []int{1255, 1689, 1951, 1953, 2037}) {
		t.Errorf("prompt mismatches on lines %v", got)
	}
	if got := flagged[RuleEmptyResponse]; !slices.Equal(got, []int{87, 517, 926, 1104}) {
		t.Errorf("empty responses on lines %v", got)
	}
}

func FuzzRanking(f *testing.F)  { fuzzFormat(f, FormatRanking) }
func FuzzPairwise(f *testing.F) { fuzzFormat(f, FormatPairwise) }
func FuzzHH(f *testing.F)       { fuzzFormat(f, FormatHH) }

// fuzzFormat checks, for any input, that the reader never panics, that every
// accepted record is a valid ranking with its flags, and that a refused file
// has a refusing problem.
func fuzzFormat(f *testing.F, format Format) {
	for _, s := range []string{
		`{"prompt":"p","responses":["a","b"],"ranking":[1,0],"labeler":"l"}`,
		`{"prompt":"p","chosen":"a","rejected":"b","labeler":"x"}`,
		`{"chosen":"\n\nHuman: a\n\nAssistant: b","rejected":"\n\nHuman: a\n\nAssistant: c"}`,
		"{}\n[]\nnull", "\x1f\x8b",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, input string, keepReading bool) {
		rd, err := NewReader(strings.NewReader(input), format, ReaderOptions{MaxChars: 1000, MaxK: 4, MaxProblems: 3, KeepReading: keepReading})
		if err != nil {
			return // not gzip after all
		}
		for {
			r, err := rd.Next()
			if errors.Is(err, ErrRefused) != rd.Refused() {
				t.Fatalf("Next() = %v with Refused() = %v", err, rd.Refused())
			}
			if err != nil {
				break
			}
			// Every accepted record is one Postgres stores as it is.
			if err := r.Validate(); err != nil && !slices.Contains(r.Flags, RuleEmptyResponse) {
				t.Fatalf("accepted an invalid record %+v: %v", r, err)
			}
			if len(r.Responses) < 2 || len(r.Responses) > 4 || len(r.Ranks) != len(r.Responses) || strings.TrimSpace(r.Labeler) == "" {
				t.Fatalf("accepted an invalid record %+v", r)
			}
			for _, s := range append([]string{r.Prompt, r.Labeler}, r.Responses...) {
				if strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) {
					t.Fatalf("accepted a text Postgres cannot store: %q", s)
				}
			}
			for _, rk := range r.Ranks {
				if rk < 1 || rk > len(r.Responses) {
					t.Fatalf("rank %d out of range in %+v", rk, r)
				}
			}
			for _, fl := range r.Flags {
				if fl.Action() != ActionFlag {
					t.Fatalf("record kept with a %s problem", fl)
				}
			}
		}
		refusing := 0
		for rule, n := range rd.Counts {
			if rule.Action() == ActionRefuse {
				refusing += n
			}
		}
		keptRefusal := slices.ContainsFunc(rd.Problems, func(p Problem) bool { return p.Rule.Action() == ActionRefuse })
		if (refusing > 0) != rd.Refused() || keptRefusal != rd.Refused() || len(rd.Problems) > 3+1 || len(rd.Problems) > rd.ProblemCount() {
			t.Fatalf("Refused() = %v with counts %v and problems %v", rd.Refused(), rd.Counts, rd.Problems)
		}
		if !keepReading {
			for _, p := range rd.Problems {
				if p.Rule.Action() == ActionRefuse && p.Line != rd.Line() {
					t.Fatalf("read on to line %d after a refusal: %v", rd.Line(), rd.Problems)
				}
			}
		}
	})
}
