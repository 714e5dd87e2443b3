package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/internal/testenv"
)

// A tiny run whose labels stage waits for two items (one train prompt and
// one held-out prompt, K = 6), labeled in the browser.
const browserSpec = `preset: micro
sft: {steps: 40, checkpoint_every: 20, eval_every: 20}
labels: {k: 6, rounds: 1, prompts: 1, heldout_prompts: 1, overlap: 0, deadline: 1h, min_labeled: 1,
  guidelines: "Rank **best first**. Flag made-up facts as *hallucination*."}
rm: {steps: 20, checkpoint_every: 10, eval_every: 10}
ppo: {iterations: 2, checkpoint_every: 1}
`

// TestLabelingInBrowser: a labeler signs in from the link that 'labelers
// add' prints, ranks six responses with a tie and a flag with the mouse,
// ranks the next item with the keyboard alone, and the run waiting for the
// labels moves on; Postgres holds both comparisons as labeled. Another
// labeler cannot open the first one's item, a form without the CSRF token
// is refused, a revoked link does not sign in, and a labeler cannot open
// the dashboard. Every page is saved as a PNG (screenshotDir).
func TestLabelingInBrowser(t *testing.T) {
	if os.Getenv("INSTRUCTFLOW_E2E") == "" {
		t.Skip("set INSTRUCTFLOW_E2E=1 (make test does) to run the browser test against the local stack")
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("no chromium on PATH: scripts/install-deps.sh installs Debian's chromium")
	}
	c := testenv.NewCLI(t, "web")
	cli := c.Run
	cli("data", "load-demo")
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	admin := "admin-token-" + testenv.Name(t)
	c.Env = append(c.Env, "INSTRUCTFLOW_SERVE_ADDRESS="+addr, "INSTRUCTFLOW_SERVE_ADMIN_TOKEN="+admin)
	c.Start("worker.log", "worker")
	c.Start("serve.log", "serve")
	base := "http://" + addr
	waitFor(t, time.Minute, func() bool { r, err := http.Get(base + "/healthz"); return err == nil && r.StatusCode == 200 })

	run := "web-" + strings.ReplaceAll(time.Now().Format("150405.000"), ".", "")
	spec := filepath.Join(t.TempDir(), "run.yaml")
	if err := os.WriteFile(spec, []byte(browserSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	// The run as the README starts it: --wait follows it until it ends,
	// which it does once people have labeled its batch in the browser.
	started := exec.Command(c.Bin, "run", "start", "-f", spec, "--set", "id="+run, "--wait")
	started.Env = c.Env
	var startOut strings.Builder
	started.Stdout, started.Stderr = &startOut, &startOut
	if err := started.Start(); err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- started.Wait() }()
	t.Cleanup(func() { _ = started.Process.Kill() })
	db, err := pgx.Connect(context.Background(), c.DBURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	batch := run + "-labels"
	waitFor(t, 5*time.Minute, func() bool {
		var n int
		_ = db.QueryRow(context.Background(), "SELECT items FROM labeling_batches WHERE name = $1", batch).Scan(&n)
		return n == 2
	})

	link := func(name string) string {
		var out struct{ Link string }
		if err := json.Unmarshal([]byte(cli("labelers", "add", name, "--json")), &out); err != nil || !strings.HasPrefix(out.Link, base+"/signin?t=") {
			t.Fatalf("labelers add %s: %+v %v", name, out, err)
		}
		return out.Link
	}
	annLink, bobLink, carlLink := link("ann"), link("bob"), link("carl")
	cli("labelers", "revoke", "carl")

	ctx := browser(t, chromium)
	shots := screenshotDir(t)
	shoot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Sign in from the link.
	do(t, ctx, chromedp.Navigate(annLink), chromedp.WaitVisible(chromedp.CSS(`button[type=submit]`)))
	shoot("signin")
	do(t, ctx, chromedp.Click(chromedp.CSS(`form[action="/signin"] button`)), chromedp.WaitVisible(chromedp.CSS(`a.button.primary`)))
	do(t, ctx, chromedp.Click(chromedp.CSS(`a.button.primary`)), chromedp.WaitVisible(chromedp.CSS(`#ranking`)))

	// Item 1, with the mouse: drag the last response to the top, tie the
	// third with the second, flag and rate.
	first := assignmentID(t, ctx)
	shoot("labeling")
	cards := cardRects(t, ctx)
	drag(t, ctx, cards[5], cards[0])
	do(t, ctx,
		chromedp.Click(chromedp.CSS(`#ranking li:nth-child(3) .tie`)),
		chromedp.Click(chromedp.CSS(`#flag_0_1`)), // response A: hallucination
		chromedp.Click(chromedp.CSS(`#rating_0_2`)), chromedp.Click(chromedp.CSS(`#rating_5_6`)))
	order, ties := listOrder(t, ctx)
	if order[0] != 5 {
		t.Fatalf("dragging F to the top gave the order %v", order)
	}
	wantRanks := ranksOf(order, ties)
	shoot("labeling-ranked")
	do(t, ctx, chromedp.Click(chromedp.CSS(`#submit`)))
	waitFor(t, 30*time.Second, func() bool { return eval[string](t, ctx, `location.pathname`) != fmt.Sprintf("/assignments/%d", first) })
	do(t, ctx, chromedp.WaitVisible(chromedp.CSS(`#ranking`)))
	second := assignmentID(t, ctx)
	if second == first {
		t.Fatal("the page did not move on to the next item")
	}
	checkComparison(t, db, first, "ann", wantRanks, map[int][]string{0: {"hallucination"}}, map[int]int{0: 2, 5: 6})

	// Item 2, with the keyboard alone: Tab to the first response, move it
	// down twice, tie it with the one above, rate it 7, submit.
	for range 40 {
		do(t, ctx, chromedp.KeyEvent("\t"))
		if eval[bool](t, ctx, `document.activeElement.classList.contains("rank-card")`) {
			break
		}
	}
	do(t, ctx, chromedp.KeyEvent(kb.ArrowDown), chromedp.KeyEvent(kb.ArrowDown), chromedp.KeyEvent("="), chromedp.KeyEvent("7"))
	order, ties = listOrder(t, ctx)
	if order[2] != 0 || !ties[2] {
		t.Fatalf("keyboard: order %v ties %v, want A third and tied", order, ties)
	}
	wantRanks = ranksOf(order, ties)
	do(t, ctx, chromedp.KeyEvent("\r", chromedp.KeyModifiers(chromedp.ModifierCtrl)), chromedp.WaitVisible(chromedp.CSS(`main p a[href="/"]`)))
	checkComparison(t, db, second, "ann", wantRanks, nil, map[int]int{0: 7})

	// The run's labels stage moves on.
	waitFor(t, 3*time.Minute, func() bool {
		var status string
		_ = db.QueryRow(context.Background(), "SELECT status FROM stages WHERE run_id = $1 AND name = 'labels'", run).Scan(&status)
		return status == "succeeded"
	})

	// Guidelines, rendered from the run's Markdown.
	do(t, ctx, chromedp.Navigate(base+"/batches/"+batch+"/guidelines"), chromedp.WaitVisible(chromedp.CSS(`article.guidelines strong`)))
	shoot("guidelines")

	// Security: bob cannot open ann's item, a form without the CSRF token
	// is refused, a revoked link does not sign in, a labeler cannot open
	// the dashboard.
	bob := signIn(t, base, bobLink)
	if code := get(t, bob, fmt.Sprintf("%s/assignments/%d", base, first)); code != http.StatusForbidden {
		t.Errorf("bob opens ann's item: %d, want 403", code)
	}
	if code := get(t, bob, base+"/admin"); code != http.StatusForbidden {
		t.Errorf("a labeler opens the dashboard: %d, want 403", code)
	}
	if r, err := bob.PostForm(base+"/signout", url.Values{}); err != nil || r.StatusCode != http.StatusForbidden {
		t.Errorf("a POST without the CSRF token: %v %v, want 403", r.StatusCode, err)
	}
	if code := get(t, bob, base+"/"); code != http.StatusOK {
		t.Errorf("bob was signed out by a form without the CSRF token: %d", code)
	}
	if r, _ := signInResponse(t, base, carlLink); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("a revoked link signs in: %d, want 401", r.StatusCode)
	}
	anon := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/", "/admin", fmt.Sprintf("/assignments/%d", first), "/batches/" + batch + "/guidelines"} {
		if code := get(t, anon, base+path); code != http.StatusSeeOther {
			t.Errorf("%s without a session: %d, want a redirect to sign-in", path, code)
		}
	}

	// The admin's dashboard: the run page with its plots, the audit.
	adminCtx := browser(t, chromium)
	do(t, adminCtx, chromedp.Navigate(base+"/signin"), chromedp.SendKeys(chromedp.CSS(`#token`), admin),
		chromedp.Click(chromedp.CSS(`form[action="/signin"] button`)), chromedp.WaitVisible(chromedp.CSS(`table`)))
	ctx = adminCtx
	shoot("dashboard")
	select {
	case err := <-runDone:
		if out := startOut.String(); err != nil || !strings.Contains(out, "run "+run+": succeeded") {
			t.Fatalf("run start --wait: %v\n%s", err, out)
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("run start --wait did not end within 5 minutes:\n%s", startOut.String())
	}
	do(t, ctx, chromedp.Navigate(base+"/admin/runs/"+run), chromedp.WaitVisible(chromedp.CSS(`figure.plot svg`)))
	nplots := eval[int](t, ctx, `document.querySelectorAll("figure.plot svg").length`)
	if nplots < 3 {
		t.Errorf("the run page shows %d plots, want SFT, RM and PPO ones", nplots)
	}
	shoot("run")
	do(t, ctx, chromedp.Navigate(base+"/admin/batches/"+batch), chromedp.WaitVisible(chromedp.CSS(`table`)))
	shoot("batch")
	do(t, ctx, chromedp.Navigate(base+"/admin/audit"), chromedp.WaitVisible(chromedp.CSS(`td.sev, table`)))
	if got := eval[string](t, ctx, `document.querySelector("main").innerText`); !strings.Contains(got, "In the labeling app") || !strings.Contains(got, fmt.Sprintf("%.0f%% of %d", 100/float64(2*len(order)), 2*len(order))) {
		t.Errorf("the audit page lacks ann's flags (1 of the responses of her 2 items):\n%s", got)
	}
	shoot("audit")
	t.Logf("screenshots in %s", shots)
}

// screenshotDir is where the pages are saved: $INSTRUCTFLOW_SCREENSHOTS,
// else screenshots/ under the test data folder (.instructflow-test in make
// test).
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("INSTRUCTFLOW_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(testenv.Config(t).DataDir, "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser starts a headless Chromium of its own (a fresh profile) for the
// test.
func browser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 1000), chromedp.UserDataDir(t.TempDir()))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 10*time.Minute)
	t.Cleanup(func() { cancelT(); cancel(); cancelA() })
	must(t, chromedp.Do(ctx))
	return ctx
}

// do runs browser actions; a failure fails the test.
func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	must(t, chromedp.Do(ctx, steps...))
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	must(t, err)
	return v
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, d time.Duration, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("not done within %s", d)
}

var assignmentPath = regexp.MustCompile(`/assignments/(\d+)$`)

func assignmentID(t *testing.T, ctx context.Context) int64 {
	t.Helper()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	must(t, err)
	m := assignmentPath.FindStringSubmatch(loc)
	if m == nil {
		t.Fatalf("not on an item's page: %s", loc)
	}
	var id int64
	fmt.Sscan(m[1], &id)
	return id
}

type rect struct{ X, Y float64 }

// cardRects are the centres of the ranking's cards, in list order.
func cardRects(t *testing.T, ctx context.Context) []rect {
	return eval[[]rect](t, ctx, `Array.from(document.querySelectorAll("#ranking .rank-card")).map(c => {
		const r = c.querySelector(".grip").getBoundingClientRect(); return {X: r.x + r.width / 2, Y: r.y + r.height / 2}; })`)
}

// drag drags with the mouse from one point to another, in steps, as a
// person does.
func drag(t *testing.T, ctx context.Context, from, to rect) {
	actions := []chromedp.Action[chromedp.Void]{
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, from.X, from.Y),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMousePressed, from.X, from.Y, chromedp.ButtonLeft),
	}
	for i := 1; i <= 12; i++ {
		f := float64(i) / 12
		actions = append(actions, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, from.X, from.Y+(to.Y-8-from.Y)*f, chromedp.ButtonLeft),
			chromedp.Sleep(30*time.Millisecond))
	}
	actions = append(actions, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseReleased, to.X, to.Y-8, chromedp.ButtonLeft), chromedp.Sleep(300*time.Millisecond))
	do(t, ctx, actions...)
}

// listOrder is the ranking list as shown: each card's response index (in
// the shown order) and whether it is tied with the card above.
func listOrder(t *testing.T, ctx context.Context) ([]int, []bool) {
	state := eval[[]struct {
		I   int
		Tie bool
	}](t, ctx, `Array.from(document.querySelectorAll("#ranking .rank-card")).map(c => ({
		I: +c.dataset.i, Tie: c.querySelector(".tie").getAttribute("aria-pressed") === "true"}))`)
	order, ties := make([]int, len(state)), make([]bool, len(state))
	for i, s := range state {
		order[i], ties[i] = s.I, s.Tie
	}
	return order, ties
}

// ranksOf gives each response (by shown index) its rank from the list: a
// card tied with the one above shares its rank.
func ranksOf(order []int, ties []bool) []int16 {
	ranks := make([]int16, len(order))
	rank := 0
	for pos, i := range order {
		if pos == 0 || !ties[pos] {
			rank = pos + 1
		}
		ranks[i] = int16(rank)
	}
	return ranks
}

// checkComparison reads the comparison of an assignment and checks it as
// labeled: the labeler, the shown order, ranks, flags and ratings (by
// shown index).
func checkComparison(t *testing.T, db *pgx.Conn, assignment int64, labeler string, ranks []int16, flags map[int][]string, ratings map[int]int) {
	t.Helper()
	var name string
	var shown, ids []int64
	var got []int16
	var rates []*int16
	var fl [][]string
	err := db.QueryRow(context.Background(), `
		SELECT l.name, a.shown_ids, c.response_ids, c.ranks, c.ratings, c.response_flags
		FROM assignments a JOIN comparisons c ON c.id = a.comparison_id JOIN labelers l ON l.id = c.labeler_id
		WHERE a.id = $1`, assignment).Scan(&name, &shown, &ids, &got, &rates, &fl)
	if err != nil {
		t.Fatalf("comparison of assignment %d: %v", assignment, err)
	}
	if name != labeler || !slices.Equal(ids, shown) || !slices.Equal(got, ranks) {
		t.Errorf("assignment %d: labeler %s, responses %v (shown %v), ranks %v; want %s and ranks %v", assignment, name, ids, shown, got, labeler, ranks)
	}
	for i := range ids {
		if !slices.Equal(fl[i], flags[i]) && !(len(fl[i]) == 0 && len(flags[i]) == 0) {
			t.Errorf("assignment %d: flags of %c %v, want %v", assignment, 'A'+i, fl[i], flags[i])
		}
		want, rated := ratings[i]
		if rated != (rates[i] != nil) || (rated && int(*rates[i]) != want) {
			t.Errorf("assignment %d: rating of %c %v, want %v", assignment, 'A'+i, rates[i], ratings[i])
		}
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-zA-Z_-]+)"`)

// signInResponse posts a sign-in link's form as a browser would: the page,
// then the form with its CSRF token and cookie. It returns the answer and
// a client that keeps the cookies (and does not follow redirects).
func signInResponse(t *testing.T, base, link string) (*http.Response, *http.Client) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	page, err := c.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	m := csrfField.FindSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token on the sign-in page:\n%s", body)
	}
	u, _ := url.Parse(link)
	r, err := c.PostForm(base+"/signin", url.Values{"csrf": {string(m[1])}, "token": {u.Query().Get("t")}})
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	return r, c
}

// signIn signs in from a link and returns a client with the session.
func signIn(t *testing.T, base, link string) *http.Client {
	t.Helper()
	r, c := signInResponse(t, base, link)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d", r.StatusCode)
	}
	return c
}

func get(t *testing.T, c *http.Client, u string) int {
	t.Helper()
	r, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	return r.StatusCode
}
