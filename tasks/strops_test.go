package tasks

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		prompt, response string
		want             float64
	}{
		{"reverse abc=", "cba", 1},
		{"upper abc=", "ABC", 1},
		{"sort cab=", "abc", 1},
		{"double ab=", "abab", 1},
		{"reverse abcd=", "dcbx", 0.9 * 0.75 * 0.75},
		{"reverse abc=", "", 0},
	} {
		got, err := Judge(tc.prompt, tc.response)
		if err != nil || math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("Judge(%q, %q) = %v, %v; want %v", tc.prompt, tc.response, got, err, tc.want)
		}
	}
	for _, bad := range []string{"reverse abc", "shout abc=", "=", "reverse ="} {
		if _, err := Judge(bad, "x"); err == nil {
			t.Errorf("Judge(%q) accepted a prompt outside the task", bad)
		}
	}
}

func TestExamplesDeterministicAndSplit(t *testing.T) {
	a, b := Examples(7, 100), Examples(7, 100)
	held := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("example %d differs between two calls with the same seed", i)
		}
		if s, _ := Judge(a[i].Prompt, a[i].Gold); s != 1 {
			t.Errorf("gold answer of %q scores %v", a[i].Prompt, s)
		}
		if a[i].Split == "heldout" {
			held++
		}
	}
	if held != 20 {
		t.Errorf("%d held-out examples of 100, want 20", held)
	}
}

func TestPerturbAndCandidates(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ex := NewExample("reverse", "hello")
	for range 1000 {
		p := Perturb(rng, ex.Gold)
		if p == ex.Gold || p == "" {
			t.Fatalf("Perturb returned %q for %q", p, ex.Gold)
		}
		if s, _ := Judge(ex.Prompt, p); s >= 1 {
			t.Fatalf("a mistake %q scores %v", p, s)
		}
	}
	c := Candidates(rng, ex, 4, 1)
	seen := map[string]bool{}
	for _, x := range c {
		if seen[x] {
			t.Fatalf("duplicate candidate %q", x)
		}
		seen[x] = true
	}
	if len(c) != 4 || !seen[ex.Gold] {
		t.Errorf("candidates %v: want 4 distinct including the gold answer", c)
	}
}

func TestLabelers(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	prompt := "reverse abc="
	shown := []string{"cbaxyz", "cba", "ab"}
	for _, tc := range []struct {
		l    Labeler
		want []int
	}{
		{Labeler{Kind: Reliable, Noise: 0}, []int{2, 1, 3}},
		{Labeler{Kind: FirstShown}, []int{1, 2, 3}},
		{Labeler{Kind: Longer}, []int{1, 2, 3}},
	} {
		got := tc.l.Rank(rng, prompt, shown)
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s ranks %v, want %v", tc.l.Kind, got, tc.want)
				break
			}
		}
	}
	rs := Simulate(9, Examples(9, 10), Panel(), 2, 3)
	if len(rs) != 30 {
		t.Fatalf("%d rankings, want 30", len(rs))
	}
	for _, r := range rs {
		if err := r.Validate(); err != nil {
			t.Fatalf("simulated ranking invalid: %v", err)
		}
	}
}
