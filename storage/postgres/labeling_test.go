package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/internal/testenv"
	"github.com/instructflow/instructflow/preference"
)

// labelingBatch stores run r1's batch "r1-labels" of n items with three
// responses each and signs in labelers, returning their session tokens.
func labelingBatch(t *testing.T, db *DB, n int, lab Labeling, labelers ...string) map[string]string {
	t.Helper()
	ctx := context.Background()
	if err := db.CreateRun(ctx, "r1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	items := make([]BatchItem, n)
	for i := range items {
		p := fmt.Sprintf("upper w%d=", i)
		items[i] = BatchItem{Item: i, Prompt: p, Responses: []string{fmt.Sprintf("W%d", i), fmt.Sprintf("w%d", i), "?"}}
	}
	if _, err := db.CreateBatch(ctx, "r1-labels", "r1", time.Now().Add(time.Hour), lab, items); err != nil {
		t.Fatal(err)
	}
	sessions := map[string]string{}
	for _, name := range labelers {
		link, err := db.AddLabeler(ctx, name, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		s, who, err := db.SignIn(ctx, link, time.Hour)
		if err != nil || who.Labeler != name || who.Admin {
			t.Fatalf("sign in %s: %+v %v", name, who, err)
		}
		sessions[name] = s
	}
	return sessions
}

func claim(t *testing.T, db *DB, session string) int64 {
	t.Helper()
	id, err := db.ClaimItem(context.Background(), session, "r1-labels")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// A labeler signs in once per link, labels the items assigned to it, and
// the comparison holds the shown order, ranks, ratings, flags and the
// labeler the session names; nobody else's assignment can be read or
// submitted, and no assignment twice.
func TestLabelingSubmission(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	s := labelingBatch(t, db, 3, Labeling{Overlap: 0}, "ann", "bob")

	a := claim(t, db, s["ann"])
	if again := claim(t, db, s["ann"]); again != a {
		t.Errorf("a second claim with an open assignment gave %d, want the open one %d", again, a)
	}
	got, err := db.GetAssignment(ctx, s["ann"], a)
	if err != nil {
		t.Fatal(err)
	}
	if got.Item != 0 || len(got.Responses) != 3 || !slices.Equal(got.FlagNames, DefaultFlags) {
		t.Fatalf("assignment %+v", got)
	}
	if _, err := db.GetAssignment(ctx, s["bob"], a); !errors.Is(err, errkind.Forbidden) {
		t.Errorf("bob reads ann's assignment: %v, want Forbidden", err)
	}
	label := Label{Ranks: []int{1, 1, 3}, Ratings: []int{6, 6, 0}, Flags: [][]string{nil, nil, {"hallucination"}}}
	if _, err := db.SubmitLabel(ctx, s["bob"], a, label); !errors.Is(err, errkind.Forbidden) {
		t.Errorf("bob submits ann's assignment: %v, want Forbidden", err)
	}
	for name, bad := range map[string]Label{
		"rank out of range": {Ranks: []int{1, 2, 4}},
		"too few ranks":     {Ranks: []int{1, 2}},
		"rating 8":          {Ranks: []int{1, 2, 3}, Ratings: []int{8, 1, 1}},
		"unknown flag":      {Ranks: []int{1, 2, 3}, Flags: [][]string{{"boring"}, nil, nil}},
		"rank 65537":        {Ranks: []int{65537, 2, 3}},
	} {
		if _, err := db.SubmitLabel(ctx, s["ann"], a, bad); !errors.Is(err, errkind.BadInput) {
			t.Errorf("%s: %v, want BadInput", name, err)
		}
	}
	cid, err := db.SubmitLabel(ctx, s["ann"], a, label)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.SubmitLabel(ctx, s["ann"], a, label); !errors.Is(err, errkind.Conflict) {
		t.Errorf("submitting twice: %v, want Conflict", err)
	}
	var labeler, source string
	var shown, stored []int64
	var ranks, ratings []*int16
	var flags []byte
	if err := db.pool.QueryRow(ctx, `
		SELECT l.name, c.source, c.response_ids, a.shown_ids, c.ranks, c.ratings, c.response_flags
		FROM comparisons c JOIN labelers l ON l.id = c.labeler_id JOIN assignments a ON a.comparison_id = c.id
		WHERE c.id = $1`, cid).Scan(&labeler, &source, &stored, &shown, &ranks, &ratings, &flags); err != nil {
		t.Fatal(err)
	}
	var fl [][]string
	_ = json.Unmarshal(flags, &fl)
	if labeler != "ann" || source != "web:r1-labels" || !slices.Equal(stored, shown) || *ranks[2] != 3 ||
		*ratings[0] != 6 || ratings[2] != nil || len(fl) != 3 || !slices.Equal(fl[2], []string{"hallucination"}) {
		t.Errorf("comparison: %s %s ids %v shown %v ratings %v flags %s", labeler, source, stored, shown, ratings, flags)
	}
	// Item 0 is done (no overlap): bob gets item 1, ann item 2.
	b := claim(t, db, s["bob"])
	if it, _ := db.GetAssignment(ctx, s["bob"], b); it.Item != 1 {
		t.Errorf("bob got item %d, want 1", it.Item)
	}
	a2 := claim(t, db, s["ann"])
	if it, _ := db.GetAssignment(ctx, s["ann"], a2); it.Item != 2 {
		t.Errorf("ann got item %d, want 2", it.Item)
	}
	// A skip returns the item to the pool for others, not to the skipper.
	if err := db.SkipItem(ctx, s["bob"], b, "  "); !errors.Is(err, errkind.BadInput) {
		t.Errorf("skip without a reason: %v", err)
	}
	if err := db.SkipItem(ctx, s["bob"], b, "not English"); err != nil {
		t.Fatal(err)
	}
	if next := claim(t, db, s["bob"]); next != 0 {
		t.Errorf("bob got %d after skipping the last free item, want nothing", next)
	}
	if _, err := db.SubmitLabel(ctx, s["ann"], a2, Label{Ranks: []int{3, 2, 1}}); err != nil {
		t.Fatal(err)
	}
	if next := claim(t, db, s["ann"]); next == 0 {
		t.Error("ann gets nothing, but bob skipped item 1")
	}
	// The ratings and flags travel with the comparison into snapshots and
	// their export.
	if _, err := db.SnapshotWhere(ctx, "web", SnapshotFilter{}); err != nil {
		t.Fatal(err)
	}
	var exported []ExportRow
	if err := db.ExportSnapshot(ctx, "web", func(r ExportRow) error { exported = append(exported, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(exported) != 2 || len(exported[0].Judged.Ratings) != 3 || *exported[0].Judged.Ratings[0] != 6 ||
		!slices.Equal(exported[0].Judged.Flags[2], []string{"hallucination"}) || exported[1].Judged.Ratings != nil {
		t.Errorf("exported judgements: %+v", exported)
	}
	// The audit counts the app's flags, skips and ratings per labeler.
	audit, err := db.AuditCounts(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	judged := map[string]preference.JudgementCounts{}
	for _, l := range audit.Labelers {
		judged[l.Name] = l.Judgements
	}
	if judged["ann"] != (preference.JudgementCounts{Labeled: 2, Responses: 6, Flagged: 1}) || judged["bob"] != (preference.JudgementCounts{Skipped: 1}) {
		t.Errorf("audit judgements %+v", judged)
	}
	progress, err := db.BatchLabelers(ctx, "r1-labels")
	if err != nil || len(progress) != 2 || progress[0] != (LabelerProgress{"ann", 2, 0, 3, 1}) || progress[1] != (LabelerProgress{"bob", 0, 1, 1, 0}) {
		t.Errorf("progress %+v %v", progress, err)
	}
}

// With overlap 1 every item goes to two labelers, never twice to one; a
// lapsed lease returns the item to the pool.
func TestAssignmentOverlapAndLease(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	s := labelingBatch(t, db, 2, Labeling{Overlap: 1, Lease: time.Second}, "ann", "bob", "cy")
	items := map[string][]int{}
	for range 2 {
		for _, who := range []string{"ann", "bob"} {
			id := claim(t, db, s[who])
			a, err := db.GetAssignment(ctx, s[who], id)
			if err != nil {
				t.Fatal(err)
			}
			items[who] = append(items[who], a.Item)
			if _, err := db.SubmitLabel(ctx, s[who], id, Label{Ranks: []int{1, 2, 3}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !slices.Equal(items["ann"], []int{0, 1}) || !slices.Equal(items["bob"], []int{0, 1}) {
		t.Errorf("items %v: each wants two labelers", items)
	}
	if id := claim(t, db, s["cy"]); id != 0 {
		t.Errorf("cy got %d, but every item has its two labels", id)
	}
	// Lease: a fresh batch where cy holds the only item until it lapses.
	if _, err := db.CreateBatch(ctx, "r1-more", "r1", time.Now().Add(time.Hour), Labeling{Lease: time.Second},
		[]BatchItem{{Item: 0, Prompt: "x=", Responses: []string{"a", "b"}}}); err != nil {
		t.Fatal(err)
	}
	held, err := db.ClaimItem(ctx, s["cy"], "r1-more")
	if err != nil || held == 0 {
		t.Fatal(held, err)
	}
	if id, _ := db.ClaimItem(ctx, s["ann"], "r1-more"); id != 0 {
		t.Fatalf("ann got the item cy holds")
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := db.SubmitLabel(ctx, s["cy"], held, Label{Ranks: []int{1, 2}}); !errors.Is(err, errkind.Conflict) {
		t.Errorf("submitting a lapsed assignment: %v, want Conflict", err)
	}
	if id, _ := db.ClaimItem(ctx, s["ann"], "r1-more"); id == 0 || id == held {
		t.Errorf("ann did not get the lapsed item: %d", id)
	}
	if _, err := db.ClaimItem(ctx, s["ann"], "no-such-batch"); !errors.Is(err, errkind.NotFound) {
		t.Errorf("claim in a missing batch: %v", err)
	}
	// An item with its first label but not its overlap one still wants
	// labeling (OpenBatches, for the simulated labelers, counts first
	// labels only); a batch past its deadline takes no claims.
	one := []BatchItem{{Item: 0, Prompt: "y=", Responses: []string{"a", "b"}}}
	if _, err := db.CreateBatch(ctx, "r1-pair", "r1", time.Now().Add(time.Hour), Labeling{Overlap: 1}, one); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateBatch(ctx, "r1-closed", "r1", time.Now().Add(-time.Minute), Labeling{}, one); err != nil {
		t.Fatal(err)
	}
	id, err := db.ClaimItem(ctx, s["bob"], "r1-pair")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.SubmitLabel(ctx, s["bob"], id, Label{Ranks: []int{2, 1}}); err != nil {
		t.Fatal(err)
	}
	toLabel, err := db.BatchesToLabel(ctx)
	if err != nil || !slices.Equal(toLabel, []string{"r1-more", "r1-pair"}) {
		t.Errorf("batches to label %v (%v), want r1-more (ann holds its item) and r1-pair (its overlap label)", toLabel, err)
	}
	if open, _ := db.OpenBatches(ctx, "r1"); slices.Contains(open, "r1-pair") {
		t.Errorf("open batches %v: r1-pair has its first label", open)
	}
	if _, err := db.ClaimItem(ctx, s["cy"], "r1-closed"); !errors.Is(err, errkind.Conflict) {
		t.Errorf("claim in a batch past its deadline: %v, want Conflict", err)
	}
}

// A link signs in once; revoking a labeler ends its sessions and links.
func TestSignInLinks(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	link, err := db.AddLabeler(ctx, "ann", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	session, _, err := db.SignIn(ctx, link, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.SignIn(ctx, link, time.Hour); !errors.Is(err, errkind.Unauthenticated) {
		t.Errorf("a used link signs in again: %v", err)
	}
	if who, err := db.GetSession(ctx, session); err != nil || who.Labeler != "ann" {
		t.Fatalf("session: %+v %v", who, err)
	}
	unused, _ := db.AddLabeler(ctx, "ann", time.Hour)
	if err := db.RevokeLabeler(ctx, "ann"); err != nil {
		t.Fatal(err)
	}
	// Adding her again gives a new link, not the old session or link back.
	fresh, err := db.AddLabeler(ctx, "ann", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetSession(ctx, session); !errors.Is(err, errkind.Unauthenticated) {
		t.Errorf("a revoked session works again after the labeler is added back: %v", err)
	}
	if _, _, err := db.SignIn(ctx, fresh, time.Hour); err != nil {
		t.Errorf("the new link: %v", err)
	}
	if err := db.RevokeLabeler(ctx, "ann"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetSession(ctx, session); !errors.Is(err, errkind.Unauthenticated) {
		t.Errorf("a revoked labeler's session: %v", err)
	}
	if _, _, err := db.SignIn(ctx, unused, time.Hour); !errors.Is(err, errkind.Unauthenticated) {
		t.Errorf("a revoked labeler's link signs in: %v", err)
	}
	if _, err := db.ClaimItem(ctx, session, "any"); !errors.Is(err, errkind.Unauthenticated) {
		t.Errorf("a revoked labeler claims: %v", err)
	}
	if _, err := db.AddLabeler(ctx, "", time.Hour); !errors.Is(err, errkind.BadInput) {
		t.Errorf("empty name: %v", err)
	}
	if _, err := db.pool.Exec(ctx, "INSERT INTO labelers (name, kind) VALUES ('sim-1', 'simulated')"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddLabeler(ctx, "sim-1", time.Hour); !errors.Is(err, errkind.BadInput) {
		t.Errorf("a simulated labeler's name: %v", err)
	}
	admin, err := db.AdminSession(ctx, "admin-token-0123456789", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if who, err := db.GetSession(ctx, admin); err != nil || !who.Admin || !bytes.Equal(who.AdminKey, TokenHash("admin-token-0123456789")) {
		t.Errorf("admin session: %+v %v", who, err)
	}
	if _, err := db.ClaimItem(ctx, admin, "any"); !errors.Is(err, errkind.Unauthenticated) {
		t.Errorf("the admin claims as a labeler: %v", err)
	}
	if err := db.EndSession(ctx, admin); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetSession(ctx, admin); !errors.Is(err, errkind.Unauthenticated) {
		t.Errorf("an ended session: %v", err)
	}
}

// The labeling tools' role can no longer forge or hide labels: no INSERT
// into comparisons (any labeler, supersedes, hash), no reads of batches,
// prompts or others' assignments; it labels through the functions, as the
// session token it holds, and sees its own assignments only.
func TestLabelerRoleLabelsOnlyThroughFunctions(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	s := labelingBatch(t, db, 2, Labeling{}, "ann", "bob")
	owner := ownerConn(t, db)
	role := "tool_" + testenv.Name(t)
	for _, sql := range []string{
		fmt.Sprintf("DROP ROLE IF EXISTS %s", role),
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD 'tool' IN ROLE instructflow_labeler", role),
	} {
		if _, err := owner.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _, _ = owner.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	cfg, _ := pgx.ParseConfig(testenv.OwnerURL(t, dbURLOf(t, db)))
	cfg.User, cfg.Password = role, "tool"
	tool, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tool.Close(ctx)

	for _, sql := range []string{
		`INSERT INTO comparisons (prompt_id, labeler_id, response_ids, ranks, content_sha256) VALUES (1, 1, '{1,2}', '{1,2}', sha256('x'))`,
		`INSERT INTO comparisons (content_sha256) VALUES (sha256('pre-empt an import'))`,
		"SELECT count(*) FROM comparisons",
		"SELECT count(*) FROM labeling_batch_items",
		"SELECT count(*) FROM prompts",
		"SELECT count(*) FROM assignments",
		"SELECT count(*) FROM web_sessions",
		"SELECT count(*) FROM audit_log",
		"SELECT count(*) FROM runs",
		"INSERT INTO prompts (text, sha256) VALUES ('x', sha256('x'))",
		"UPDATE comparisons SET ranks = '{1,2}'",
		"DELETE FROM comparisons",
		"INSERT INTO labelers (name) VALUES ('sneaky')",
		"UPDATE assignments SET labeler_id = 1",
	} {
		if _, err := tool.Exec(ctx, sql); pgCode(err) != "42501" {
			t.Errorf("the labeler role may: %s (%v)", sql, err)
		}
	}
	var aid int64
	if err := tool.QueryRow(ctx, "SELECT public.claim_item($1, 'r1-labels')", s["ann"]).Scan(&aid); err != nil {
		t.Fatal(err)
	}
	claim(t, db, s["bob"])
	count := func() int {
		var n int
		if err := tool.QueryRow(ctx, "SELECT count(*) FROM my_assignments").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 0 {
		t.Errorf("without a session the tool sees %d assignments", n)
	}
	if _, err := tool.Exec(ctx, "SELECT set_config('instructflow.session', $1, false)", s["ann"]); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Errorf("as ann the tool sees %d assignments, want her one", n)
	}
	if _, err := tool.Exec(ctx, "SELECT public.submit_label($1, $2, '{2,1,3}', NULL, NULL)", s["ann"], aid); err != nil {
		t.Fatal(err)
	}
	var actor string
	if err := owner.QueryRow(ctx, "SELECT actor FROM audit_log WHERE entity = 'comparisons' ORDER BY id DESC LIMIT 1").Scan(&actor); err != nil || actor != role {
		t.Errorf("audit row names %q, want the tool's login %q (%v)", actor, role, err)
	}
}

// dbURLOf is the runtime URL of db's database.
func dbURLOf(t *testing.T, db *DB) string {
	t.Helper()
	var name string
	if err := db.pool.QueryRow(context.Background(), "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	return "postgres:///" + name
}
