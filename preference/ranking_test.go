package preference

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	ok := Ranking{Prompt: "p", Responses: []string{"a", "b"}, Ranks: []int{1, 2}, Labeler: "l"}
	for _, tc := range []struct {
		name string
		edit func(*Ranking)
		want string // substring of the error; "" = valid
	}{
		{"valid", func(*Ranking) {}, ""},
		{"tie", func(r *Ranking) { r.Ranks = []int{1, 1} }, ""},
		{"empty prompt", func(r *Ranking) { r.Prompt = "" }, "empty prompt"},
		{"no labeler", func(r *Ranking) { r.Labeler = "" }, "labeler \"\" is blank"},
		{"blank labeler", func(r *Ranking) { r.Labeler = " \t" }, "is blank"},
		{"NUL in labeler", func(r *Ranking) { r.Labeler = "a\x00" }, "NUL"},
		{"NUL in prompt", func(r *Ranking) { r.Prompt = "p\x00" }, "NUL"},
		{"NUL in response", func(r *Ranking) { r.Responses = []string{"a", "\x00"} }, "NUL"},
		{"one response", func(r *Ranking) { r.Responses, r.Ranks = []string{"a"}, []int{1} }, "at least 2"},
		{"rank count", func(r *Ranking) { r.Ranks = []int{1} }, "1 ranks for 2 responses"},
		{"empty response", func(r *Ranking) { r.Responses = []string{"a", ""} }, "response 1 is empty"},
		{"duplicate", func(r *Ranking) { r.Responses = []string{"a", "a"} }, "identical"},
		{"rank range", func(r *Ranking) { r.Ranks = []int{1, 3} }, "outside 1..2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			r.Responses = append([]string(nil), ok.Responses...)
			r.Ranks = append([]int(nil), ok.Ranks...)
			tc.edit(&r)
			err := r.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestContentHashSeparatesFields(t *testing.T) {
	a := Ranking{Prompt: "ab", Responses: []string{"c", "d"}, Ranks: []int{1, 2}, Labeler: "l"}
	b := Ranking{Prompt: "a", Responses: []string{"bc", "d"}, Ranks: []int{1, 2}, Labeler: "l"}
	c := Ranking{Prompt: "ab", Responses: []string{"c", "d"}, Ranks: []int{2, 1}, Labeler: "l"}
	if a.ContentHash() == b.ContentHash() || a.ContentHash() == c.ContentHash() {
		t.Fatal("different rankings share a content hash")
	}
	if a.ContentHash() != a.ContentHash() {
		t.Fatal("hash is not deterministic")
	}
}
