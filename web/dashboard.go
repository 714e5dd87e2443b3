package web

import (
	"bytes"
	"html/template"
	"net/http"
	"strings"

	"github.com/instructflow/instructflow/control"
	"github.com/instructflow/instructflow/plots"
	"github.com/instructflow/instructflow/preference"
	"github.com/instructflow/instructflow/storage/postgres"
)

type dashboardPage struct {
	Runs     []postgres.Run
	Batches  []postgres.Batch
	Labelers []postgres.LabelerAccount
}

func (s *Server) dashboard(w http.ResponseWriter, r *request) {
	var d dashboardPage
	var err error
	if d.Runs, err = s.dash.Runs(r.Context(), 50); err == nil {
		if d.Batches, err = s.dash.Batches(r.Context()); err == nil {
			d.Labelers, err = s.dash.LabelerAccounts(r.Context())
		}
	}
	if err != nil {
		s.fail(w, r.Request, err)
		return
	}
	s.page(w, r.Request, http.StatusOK, "dashboard", pageData{Title: "Dashboard", CSRF: r.csrf, Who: r.who, Data: d})
}

// runPage is a run's page: live stages, plots, report.
type runPage struct {
	Status control.Status
	Report string
	UI     string
	Plots  []plotImage
	Lines  []string
}

type plotImage struct {
	Title string
	SVG   template.HTML
}

func (s *Server) runData(r *request) (runPage, error) {
	run := r.PathValue("run")
	st, err := s.runs.Status(r.Context(), run)
	if err != nil {
		return runPage{}, err
	}
	rep, err := s.runs.Report(r.Context(), run)
	if err != nil {
		return runPage{}, err
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		return runPage{}, err
	}
	return runPage{Status: st, Report: text.String(), UI: rep.UI, Lines: control.ProgressLines(st.Progress)}, nil
}

func (s *Server) runPage(w http.ResponseWriter, r *request) {
	d, err := s.runData(r)
	if err != nil {
		s.fail(w, r.Request, err)
		return
	}
	images, err := plots.DrawRun(func(stage string) ([]plots.Metric, error) {
		stored, err := s.dash.Metrics(r.Context(), d.Status.Run.ID, stage)
		return plots.Of(stored), err
	}, "svg")
	if err != nil {
		s.fail(w, r.Request, err)
		return
	}
	for _, img := range images {
		svg := string(img.Data)
		if i := strings.Index(svg, "<svg"); i > 0 { // drop the XML prolog: the SVG sits inside HTML
			svg = svg[i:]
		}
		d.Plots = append(d.Plots, plotImage{Title: img.Chart.Title, SVG: template.HTML(svg)}) // drawn here from numbers, no user text
	}
	s.page(w, r.Request, http.StatusOK, "run", pageData{Title: "Run " + d.Status.Run.ID, CSRF: r.csrf, Who: r.who, Data: d})
}

// runLive is the run page's live part, which its script fetches again
// while the run runs.
func (s *Server) runLive(w http.ResponseWriter, r *request) {
	d, err := s.runData(r)
	if err != nil {
		s.fail(w, r.Request, err)
		return
	}
	var b bytes.Buffer
	if err := s.pages["run"].ExecuteTemplate(&b, "live", d); err != nil {
		s.fail(w, r.Request, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}

type batchPage struct {
	Batch    postgres.Batch
	Labelers []postgres.LabelerProgress
}

func (s *Server) batchPage(w http.ResponseWriter, r *request) {
	name := r.PathValue("batch")
	b, err := s.labels.GetBatch(r.Context(), name)
	if err != nil {
		s.fail(w, r.Request, err)
		return
	}
	labs, err := s.labels.BatchLabelers(r.Context(), name)
	if err != nil {
		s.fail(w, r.Request, err)
		return
	}
	s.page(w, r.Request, http.StatusOK, "batch", pageData{Title: "Batch " + name, CSRF: r.csrf, Who: r.who, Data: batchPage{Batch: b, Labelers: labs}})
}

type auditPage struct {
	Snapshot string
	Report   preference.Report
}

func (s *Server) auditPage(w http.ResponseWriter, r *request) {
	snap := r.URL.Query().Get("snapshot")
	counts, err := s.dash.AuditCounts(r.Context(), snap)
	if err != nil {
		s.fail(w, r.Request, err)
		return
	}
	rep := preference.Audit(counts)
	title := "Label audit: all current comparisons"
	if snap != "" {
		title = "Label audit: snapshot " + snap
	}
	s.page(w, r.Request, http.StatusOK, "audit", pageData{Title: title, CSRF: r.csrf, Who: r.who, Data: auditPage{Snapshot: snap, Report: rep}})
}
