// Command genrows writes N synthetic rows, as JSONL for instructflow and as
// the CSV that psql \copy reads, for the side-by-side import benchmarks:
// pairwise preference rows (`labels import --format pairwise`,
// scripts/bench_labels.sh) or demonstrations (`data import --format
// prompt-completion`, scripts/bench_data.sh). Deterministic.
package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
)

func main() {
	n := flag.Int("n", 1_000_000, "rows")
	jsonl := flag.String("jsonl", "pairs.jsonl", "JSONL output")
	csvPath := flag.String("csv", "pairs.csv", "CSV output")
	kind := flag.String("kind", "pairs", "pairs or demos")
	flag.Parse()
	if *kind != "pairs" && *kind != "demos" {
		fmt.Fprintln(os.Stderr, "genrows: -kind: use pairs or demos")
		os.Exit(2)
	}
	if err := run(*n, *kind, *jsonl, *csvPath); err != nil {
		fmt.Fprintln(os.Stderr, "genrows:", err)
		os.Exit(1)
	}
}

var words = strings.Fields("the a model answer question helpful harmless honest label reward policy prompt " +
	"response token train value loss step batch rank pair human assistant explain why how what when")

func sentence(rng *rand.Rand, n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = words[rng.IntN(len(words))]
	}
	return strings.Join(w, " ")
}

func run(n int, kind, jsonlPath, csvPath string) error {
	rng := rand.New(rand.NewPCG(1, 2))
	jf, err := os.Create(jsonlPath)
	if err != nil {
		return err
	}
	defer jf.Close()
	cf, err := os.Create(csvPath)
	if err != nil {
		return err
	}
	defer cf.Close()
	jw, cw := bufio.NewWriterSize(jf, 1<<20), csv.NewWriter(bufio.NewWriterSize(cf, 1<<20))
	enc := json.NewEncoder(jw)
	prompts := n / 4 // four comparisons per prompt on average
	if kind == "demos" {
		prompts = n / 2 // two demonstrations per prompt on average
	}
	for i := range n {
		pid := rng.IntN(prompts)
		p := fmt.Sprintf("q%d: %s?", pid, sentence(rand.New(rand.NewPCG(uint64(pid), 3)), 12))
		if kind == "demos" {
			row := struct {
				Prompt     string `json:"prompt"`
				Completion string `json:"completion"`
			}{p, " " + sentence(rng, 20+rng.IntN(20))}
			if err := enc.Encode(row); err != nil {
				return err
			}
			if err := cw.Write([]string{row.Prompt, row.Completion}); err != nil {
				return err
			}
			continue
		}
		row := struct {
			Prompt   string `json:"prompt"`
			Chosen   string `json:"chosen"`
			Rejected string `json:"rejected"`
			Labeler  string `json:"labeler"`
		}{p, sentence(rng, 20+rng.IntN(20)), sentence(rng, 20+rng.IntN(20)), fmt.Sprintf("labeler-%02d", i%40)}
		if err := enc.Encode(row); err != nil {
			return err
		}
		if err := cw.Write([]string{row.Prompt, row.Chosen, row.Rejected, row.Labeler}); err != nil {
			return err
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return jw.Flush()
}
