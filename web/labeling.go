package web

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/yuin/goldmark"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/storage/postgres"
)

var funcs = template.FuncMap{
	"letter": func(i int) string { return string(rune('A' + i)) },
	"add":    func(a, b int) int { return a + b },
	"seq": func(n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = i + 1
		}
		return out
	},
	"pct": func(a, b int) string {
		if b == 0 {
			return "0"
		}
		return strconv.Itoa(100 * a / b)
	},
	"path":   url.PathEscape,
	"mul100": func(v float64) float64 { return 100 * v },
}

func (s *Server) progress(r *request, batch string) (postgres.LabelerBatch, error) {
	return s.labels.ProgressOf(r.Context(), batch, r.who.Labeler)
}

// home lists a labeler's open batches (the admin goes to the dashboard).
func (s *Server) home(w http.ResponseWriter, r *request) {
	if r.who.Admin {
		http.Redirect(w, r.Request, "/admin", http.StatusSeeOther)
		return
	}
	names, err := s.labels.BatchesToLabel(r.Context())
	if err != nil {
		s.fail(w, r.Request, err)
		return
	}
	var batches []postgres.LabelerBatch
	for _, n := range names {
		p, err := s.progress(r, n)
		if err != nil {
			s.fail(w, r.Request, err)
			return
		}
		batches = append(batches, p)
	}
	s.page(w, r.Request, http.StatusOK, "home", pageData{Title: "Batches to label", CSRF: r.csrf, Who: r.who, Data: batches})
}

// next gives the labeler an item of the batch and opens it.
func (s *Server) next(w http.ResponseWriter, r *request) {
	batch := r.PathValue("batch")
	id, err := s.labels.ClaimItem(r.Context(), r.token, batch)
	if err != nil {
		s.fail(w, r.Request, err)
		return
	}
	if id == 0 {
		p, err := s.progress(r, batch)
		if err != nil {
			s.fail(w, r.Request, err)
			return
		}
		s.page(w, r.Request, http.StatusOK, "done", pageData{Title: "Nothing left for you", CSRF: r.csrf, Who: r.who, Data: p})
		return
	}
	http.Redirect(w, r.Request, fmt.Sprintf("/assignments/%d", id), http.StatusSeeOther)
}

// labelPage is the labeling page's data.
type labelPage struct {
	A          postgres.Assignment
	Guidelines template.HTML
	Progress   postgres.LabelerBatch
	K          int
}

// assignmentID reads the assignment id of the path; a bad one is answered
// as not found.
func (s *Server) assignmentID(w http.ResponseWriter, r *request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		s.fail(w, r.Request, fmt.Errorf("assignment %q: %w", r.PathValue("id"), errkind.NotFound))
		return 0, false
	}
	return id, true
}

// toNext sends the labeler on to the batch's next item.
func toNext(w http.ResponseWriter, r *request, batch string) {
	http.Redirect(w, r.Request, "/batches/"+url.PathEscape(batch)+"/next", http.StatusSeeOther)
}

func (s *Server) assignment(w http.ResponseWriter, r *request) {
	s.showAssignment(w, r, http.StatusOK, "")
}

func (s *Server) showAssignment(w http.ResponseWriter, r *request, status int, msg string) {
	id, ok := s.assignmentID(w, r)
	if !ok {
		return
	}
	a, err := s.labels.GetAssignment(r.Context(), r.token, id)
	if err != nil {
		s.fail(w, r.Request, err)
		return
	}
	if a.Done {
		toNext(w, r, a.Batch)
		return
	}
	p, err := s.progress(r, a.Batch)
	if err != nil {
		s.fail(w, r.Request, err)
		return
	}
	guide, err := markdown(a.Guidelines)
	if err != nil {
		s.fail(w, r.Request, err)
		return
	}
	s.page(w, r.Request, status, "label", pageData{Title: fmt.Sprintf("%s: item %d", a.Batch, a.Item), Message: msg, CSRF: r.csrf, Who: r.who,
		Data: labelPage{A: a, Guidelines: guide, Progress: p, K: len(a.Responses)}})
}

// submit reads the form (rank_i, rating_i, flag_i per response i in the
// shown order) and stores the label through the database's function.
func (s *Server) submit(w http.ResponseWriter, r *request) {
	id, ok := s.assignmentID(w, r)
	if !ok {
		return
	}
	k, err := strconv.Atoi(r.PostFormValue("k"))
	if err != nil || k < 2 || k > 64 {
		s.fail(w, r.Request, errkind.BadInputf("the form does not say how many responses it ranks"))
		return
	}
	l := postgres.Label{Ranks: make([]int, k), Ratings: make([]int, k), Flags: make([][]string, k)}
	var missing []string
	for i := range k {
		rank, err := strconv.Atoi(r.PostFormValue(fmt.Sprintf("rank_%d", i)))
		if err != nil {
			missing = append(missing, string(rune('A'+i)))
		}
		l.Ranks[i] = rank
		if v := r.PostFormValue(fmt.Sprintf("rating_%d", i)); v != "" {
			if l.Ratings[i], err = strconv.Atoi(v); err != nil {
				s.fail(w, r.Request, errkind.BadInputf("rating of %c: %q is not a number from 1 to 7", 'A'+i, v))
				return
			}
		}
		l.Flags[i] = r.PostForm[fmt.Sprintf("flag_%d", i)]
	}
	if len(missing) > 0 {
		s.showAssignment(w, r, http.StatusBadRequest, "Rank every response first: "+strings.Join(missing, ", ")+" has no rank.")
		return
	}
	if _, err := s.labels.SubmitLabel(r.Context(), r.token, id, l); err != nil {
		if errors.Is(err, errkind.BadInput) {
			s.showAssignment(w, r, http.StatusBadRequest, strings.TrimPrefix(err.Error(), "postgres: "))
			return
		}
		s.fail(w, r.Request, err)
		return
	}
	toNext(w, r, r.PostFormValue("batch"))
}

func (s *Server) skip(w http.ResponseWriter, r *request) {
	id, ok := s.assignmentID(w, r)
	if !ok {
		return
	}
	if err := s.labels.SkipItem(r.Context(), r.token, id, r.PostFormValue("reason")); err != nil {
		if errors.Is(err, errkind.BadInput) {
			s.showAssignment(w, r, http.StatusBadRequest, "Say why you skip this item.")
			return
		}
		s.fail(w, r.Request, err)
		return
	}
	toNext(w, r, r.PostFormValue("batch"))
}

func (s *Server) guidelines(w http.ResponseWriter, r *request) {
	batch := r.PathValue("batch")
	g, err := s.labels.BatchGuidelines(r.Context(), batch)
	if err != nil {
		s.fail(w, r.Request, err)
		return
	}
	html, err := markdown(g)
	if err != nil {
		s.fail(w, r.Request, err)
		return
	}
	s.page(w, r.Request, http.StatusOK, "guidelines", pageData{Title: "Guidelines: " + batch, CSRF: r.csrf, Who: r.who, Data: html})
}

// markdown renders guidelines; raw HTML in them is not passed through.
func markdown(src string) (template.HTML, error) {
	if strings.TrimSpace(src) == "" {
		src = defaultGuidelines
	}
	var b bytes.Buffer
	if err := goldmark.Convert([]byte(src), &b); err != nil {
		return "", fmt.Errorf("web: guidelines: %w", err)
	}
	return template.HTML(b.String()), nil // goldmark leaves raw HTML out unless told otherwise
}

const defaultGuidelines = `Rank the responses from **best** (1) to **worst**, as a user who asked the prompt would.

- Prefer the response that does what the prompt asks, is **true**, and is **harmless**; when they conflict, harmlessness and truth come first.
- Give two responses the **same rank** only when you truly cannot tell them apart.
- Rate each response from 1 (terrible) to 7 (excellent) on its own, and tick every flag that applies.
- **Skip** an item you cannot judge (a language or subject you do not know, a broken prompt), and say why.
`
