// Command loadlabels is the labeling app's load benchmark (run by
// scripts/bench_serve.sh): it stores a batch and labelers in the database
// given, then N labelers (HTTP clients with sessions of their own) sign in
// to the server given and label concurrently until L labels are in. It
// prints the submit latency (p50, p99, max) and checks the database: every
// submitted label stored once, none lost, no item labeled twice by one
// labeler, no assignment with two labels.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/storage/postgres"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8080", "the server")
	dbURL := flag.String("db", os.Getenv("INSTRUCTFLOW_POSTGRES_URL"), "the server's database (runtime role)")
	labelers := flag.Int("labelers", 50, "concurrent labelers")
	labels := flag.Int("labels", 5000, "labels to submit in all")
	k := flag.Int("k", 4, "responses per item")
	think := flag.Duration("think", time.Second, "each labeler's time on an item between opening it and submitting (0: a closed loop that saturates the server)")
	flag.Parse()
	if err := run(context.Background(), *base, *dbURL, *labelers, *labels, *k, *think); err != nil {
		fmt.Fprintln(os.Stderr, "loadlabels:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, base, dbURL string, nLabelers, nLabels, k int, think time.Duration) error {
	db, err := postgres.Open(ctx, dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	tag := time.Now().Format("150405")
	batch := "load-" + tag
	// Enough items that every labeler always finds one: with overlap 0.1
	// each item wants 1.1 labels on average.
	items := make([]postgres.BatchItem, nLabels+nLabels/10)
	for i := range items {
		resp := make([]string, k)
		for j := range resp {
			resp[j] = fmt.Sprintf("response %d to prompt %d", j, i)
		}
		items[i] = postgres.BatchItem{Item: i, Prompt: fmt.Sprintf("load prompt %s-%d", tag, i), Responses: resp}
	}
	if _, err := db.CreateBatch(ctx, batch, "", time.Now().Add(time.Hour), postgres.Labeling{Overlap: 0.1}, items); err != nil {
		return err
	}
	links := make([]string, nLabelers)
	for i := range links {
		token, err := db.AddLabeler(ctx, fmt.Sprintf("load-%s-%02d", tag, i), time.Hour)
		if err != nil {
			return err
		}
		links[i] = base + "/signin?t=" + token
	}

	var submitted atomic.Int64
	var mu sync.Mutex
	var latencies, claims []time.Duration
	errs := make(chan error, nLabelers)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range nLabelers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, c, err := labeler(base, links[i], batch, k, think, uint64(i), func() bool { return submitted.Add(1) <= int64(nLabels) })
			mu.Lock()
			latencies, claims = append(latencies, l...), append(claims, c...)
			mu.Unlock()
			if err != nil {
				errs <- fmt.Errorf("labeler %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	close(errs)
	for err := range errs {
		return err
	}

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var stored, pairs, perAssignment int
	err = conn.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM comparisons c JOIN labeling_batches b ON b.id = c.batch_id WHERE b.name = $1),
		       (SELECT count(DISTINCT (c.batch_item, c.labeler_id)) FROM comparisons c JOIN labeling_batches b ON b.id = c.batch_id WHERE b.name = $1),
		       (SELECT count(*) FROM assignments a JOIN labeling_batches b ON b.id = a.batch_id WHERE b.name = $1 AND a.comparison_id IS NOT NULL)`,
		batch).Scan(&stored, &pairs, &perAssignment)
	if err != nil {
		return err
	}
	fmt.Printf("%d labelers (%s per item, ±50%%) submitted %d labels in %.1fs (%.0f labels/s) to %s\n", nLabelers, think, len(latencies), wall.Seconds(), float64(len(latencies))/wall.Seconds(), base)
	fmt.Printf("submit latency: p50 %s  p99 %s  max %s (target p99 < 100ms)\n", pct(latencies, 50), pct(latencies, 99), pct(latencies, 100))
	fmt.Printf("next-item latency (claim + page): p50 %s  p99 %s\n", pct(claims, 50), pct(claims, 99))
	fmt.Printf("database: %d comparisons in the batch, %d distinct (item, labeler), %d assignments with a label\n", stored, pairs, perAssignment)
	if stored != len(latencies) || pairs != stored || perAssignment != stored || stored != nLabels {
		return fmt.Errorf("labels lost or duplicated: %d submitted (of %d), %d stored, %d distinct, %d assignments", len(latencies), nLabels, stored, pairs, perAssignment)
	}
	fmt.Println("no label lost or duplicated")
	return nil
}

var (
	csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-zA-Z_-]+)"`)
	itemPath  = regexp.MustCompile(`/assignments/(\d+)$`)
)

// labeler signs in with its link and labels items while more() says so,
// returning the submit latencies and the next-item latencies.
func labeler(base, link, batch string, k int, think time.Duration, seed uint64, more func() bool) (submits, nexts []time.Duration, err error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	page, err := fetch(c, "GET", link, nil)
	if err != nil {
		return nil, nil, err
	}
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		return nil, nil, errors.New("no CSRF token on the sign-in page")
	}
	u, _ := url.Parse(link)
	if _, err := fetch(c, "POST", base+"/signin", url.Values{"csrf": {m[1]}, "token": {u.Query().Get("t")}}); err != nil {
		return nil, nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	for more() {
		t0 := time.Now()
		r, err := c.Get(base + "/batches/" + batch + "/next")
		if err != nil {
			return submits, nexts, err
		}
		r.Body.Close()
		loc := r.Header.Get("Location")
		id := itemPath.FindStringSubmatch(loc)
		if id == nil {
			return submits, nexts, fmt.Errorf("next item: %d %q (nothing left?)", r.StatusCode, loc)
		}
		page, err := fetch(c, "GET", base+loc, nil)
		if err != nil {
			return submits, nexts, err
		}
		nexts = append(nexts, time.Since(t0))
		m := csrfField.FindStringSubmatch(page)
		if m == nil {
			return submits, nexts, errors.New("no CSRF token on the labeling page")
		}
		form := url.Values{"csrf": {m[1]}, "batch": {batch}, "k": {strconv.Itoa(k)}}
		for i, rank := range rng.Perm(k) {
			form.Set(fmt.Sprintf("rank_%d", i), strconv.Itoa(rank+1))
			form.Set(fmt.Sprintf("rating_%d", i), strconv.Itoa(1+rng.IntN(7)))
		}
		// Each labeler takes think (±50%) on an item.
		time.Sleep(think/2 + time.Duration(rng.Int64N(int64(think)+1)))
		t1 := time.Now()
		if _, err := fetch(c, "POST", base+loc, form); err != nil {
			return submits, nexts, err
		}
		submits = append(submits, time.Since(t1))
	}
	return submits, nexts, nil
}

// fetch does a request and wants 200 or a redirect.
func fetch(c *http.Client, method, u string, form url.Values) (string, error) {
	var r *http.Response
	var err error
	if method == "POST" {
		r, err = c.PostForm(u, form)
	} else {
		r, err = c.Get(u)
	}
	if err != nil {
		return "", err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return "", err
	}
	if r.StatusCode != http.StatusOK && r.StatusCode != http.StatusSeeOther {
		return "", fmt.Errorf("%s %s: %d: %.300s", method, u, r.StatusCode, b)
	}
	return string(b), nil
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p+99)/100 - 1
	return s[max(0, min(i, len(s)-1))].Round(100 * time.Microsecond)
}
