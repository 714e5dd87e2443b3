// Package web is `instructflow serve`: the labeling app, where people rank
// the K responses of the items a run waits for, and the admin dashboard,
// where runs are watched (stages, progress, plots, report, label audit).
//
// One net/http server with html/template pages and embedded assets; the
// only JavaScript is the ranking widget (drag-and-drop with the vendored
// SortableJS, and the keyboard) and the dashboard's live refresh. Nothing
// answers without a session but the sign-in page. Labelers act only
// through the database's functions, which take the labeler from the
// session token and every id from the assignment.
package web

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/instructflow/instructflow/control"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/preference"
	"github.com/instructflow/instructflow/storage/postgres"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Labels is what the labeling pages need of the label database.
type Labels interface {
	SignIn(ctx context.Context, linkToken string, ttl time.Duration) (string, postgres.Session, error)
	AdminSession(ctx context.Context, adminToken string, ttl time.Duration) (string, error)
	GetSession(ctx context.Context, token string) (postgres.Session, error)
	EndSession(ctx context.Context, token string) error
	BatchesToLabel(ctx context.Context) ([]string, error)
	GetBatch(ctx context.Context, name string) (postgres.Batch, error)
	BatchGuidelines(ctx context.Context, name string) (string, error)
	BatchLabelers(ctx context.Context, batch string) ([]postgres.LabelerProgress, error)
	ProgressOf(ctx context.Context, batch, labeler string) (postgres.LabelerBatch, error)
	ClaimItem(ctx context.Context, session, batch string) (int64, error)
	GetAssignment(ctx context.Context, session string, id int64) (postgres.Assignment, error)
	SubmitLabel(ctx context.Context, session string, id int64, l postgres.Label) (int64, error)
	SkipItem(ctx context.Context, session string, id int64, reason string) error
}

// Dashboard is what the admin pages need besides Labels.
type Dashboard interface {
	Runs(ctx context.Context, limit int) ([]postgres.Run, error)
	Batches(ctx context.Context) ([]postgres.Batch, error)
	LabelerAccounts(ctx context.Context) ([]postgres.LabelerAccount, error)
	Metrics(ctx context.Context, run, stage string) ([]postgres.Metric, error)
	AuditCounts(ctx context.Context, snapshot string) (preference.AuditInput, error)
}

// RunControl reads runs' live state (the Temporal side).
type RunControl interface {
	Status(ctx context.Context, run string) (control.Status, error)
	Report(ctx context.Context, run string) (control.Report, error)
}

// Config is how the server runs.
type Config struct {
	// AdminToken signs the admin in to the dashboard; empty turns the
	// dashboard off.
	AdminToken string
	// Secure marks cookies Secure (TLS here or at a proxy in front).
	Secure bool
	// BehindProxy trusts X-Forwarded-For (the client's address, for the
	// sign-in rate limit) and X-Forwarded-Proto from the proxy in front.
	BehindProxy bool
	// SessionTTL is how long a sign-in lasts.
	SessionTTL time.Duration
	// SignInRate is how many sign-in attempts one address may make per
	// minute.
	SignInRate int
}

// Server serves the labeling app and the dashboard.
type Server struct {
	labels    Labels
	dash      Dashboard
	runs      RunControl
	cfg       Config
	pages     map[string]*template.Template
	limiter   *limiter
	log       *slog.Logger
	csrfNoise []byte // keys the sign-in form's token
}

// New builds a server. dash and runs may be nil (no dashboard).
func New(labels Labels, dash Dashboard, runs RunControl, cfg Config, log *slog.Logger) (*Server, error) {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.SignInRate <= 0 {
		cfg.SignInRate = 10
	}
	s := &Server{labels: labels, dash: dash, runs: runs, cfg: cfg, log: log,
		limiter: newLimiter(cfg.SignInRate, time.Minute), pages: map[string]*template.Template{},
		csrfNoise: []byte(postgres.NewToken())}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if n == "templates/layout.html" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", n, err)
		}
		s.pages[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")] = t
	}
	return s, nil
}

// Handler is the server's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	mux.Handle("GET /static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // files only, no listings
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /signin", s.signInPage)
	mux.HandleFunc("POST /signin", s.signIn)
	mux.HandleFunc("POST /signout", s.withSession(s.signOut))
	mux.HandleFunc("GET /{$}", s.withSession(s.home))
	mux.HandleFunc("GET /batches/{batch}/next", s.labeler(s.next))
	mux.HandleFunc("GET /batches/{batch}/guidelines", s.labeler(s.guidelines))
	mux.HandleFunc("GET /assignments/{id}", s.labeler(s.assignment))
	mux.HandleFunc("POST /assignments/{id}", s.labeler(s.submit))
	mux.HandleFunc("POST /assignments/{id}/skip", s.labeler(s.skip))
	mux.HandleFunc("GET /admin", s.admin(s.dashboard))
	mux.HandleFunc("GET /admin/runs/{run}", s.admin(s.runPage))
	mux.HandleFunc("GET /admin/runs/{run}/live", s.admin(s.runLive))
	mux.HandleFunc("GET /admin/batches/{batch}", s.admin(s.batchPage))
	mux.HandleFunc("GET /admin/audit", s.admin(s.auditPage))
	return secureHeaders(mux)
}

// secureHeaders sets what every answer carries: no framing, no sniffing,
// no referrer (sign-in links carry a token), scripts and styles from here.
func secureHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

const (
	sessionCookie = "instructflow_session"
	signInCookie  = "instructflow_signin"
)

// request is a signed-in request: who, and its session token.
type request struct {
	*http.Request
	token string
	who   postgres.Session
	csrf  string
}

type handler func(w http.ResponseWriter, r *request)

// withSession answers only signed-in requests; others go to sign-in. A
// POST must carry the session's CSRF token.
func (s *Server) withSession(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(sessionCookie)
		if err != nil {
			s.toSignIn(w, r)
			return
		}
		who, err := s.labels.GetSession(r.Context(), c.Value)
		if err == nil && who.Admin && (s.cfg.AdminToken == "" || !hmac.Equal(who.AdminKey, postgres.TokenHash(s.cfg.AdminToken))) {
			err = errkind.Unauthenticated // opened with an admin token that is no longer the server's
		}
		if errors.Is(err, errkind.Unauthenticated) {
			s.toSignIn(w, r)
			return
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		req := &request{Request: r, token: c.Value, who: who, csrf: csrfToken(c.Value)}
		if r.Method == http.MethodPost && !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(req.csrf)) {
			s.page(w, r, http.StatusForbidden, "error", pageData{Title: "Refused", Message: "This form is stale or did not come from this site (no valid CSRF token). Go back, reload the page and try again."})
			return
		}
		h(w, req)
	}
}

// labeler answers labelers only; admin answers the admin only (and only
// with a dashboard).
func (s *Server) labeler(h handler) http.HandlerFunc {
	return s.only(func(r *request) bool { return !r.who.Admin }, "Labelers only",
		"The admin signs in to the dashboard, not to label: sign in with a labeler's link.", h)
}

func (s *Server) admin(h handler) http.HandlerFunc {
	return s.only(func(r *request) bool { return r.who.Admin && s.dash != nil }, "Admins only",
		"The dashboard is for the admin (serve.admin_token).", h)
}

// only answers signed-in requests that may: others get 403 with why.
func (s *Server) only(may func(*request) bool, title, why string, h handler) http.HandlerFunc {
	return s.withSession(func(w http.ResponseWriter, r *request) {
		if !may(r) {
			s.page(w, r.Request, http.StatusForbidden, "error", pageData{Title: title, Message: why, CSRF: r.csrf, Who: r.who})
			return
		}
		h(w, r)
	})
}

// csrfToken is a session's CSRF token: derived from the session's secret,
// so a page of another site cannot know it.
func csrfToken(session string) string {
	m := hmac.New(sha256.New, []byte(session))
	m.Write([]byte("instructflow csrf"))
	return hex.EncodeToString(m.Sum(nil))
}

func (s *Server) toSignIn(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return
	}
	http.Error(w, "not signed in: sign in from your link", http.StatusUnauthorized)
}

func (s *Server) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: int(maxAge.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.secure(r)})
}

func (s *Server) secure(r *http.Request) bool {
	return s.cfg.Secure || r.TLS != nil || (s.cfg.BehindProxy && r.Header.Get("X-Forwarded-Proto") == "https")
}

// signInPage shows the sign-in form; a link's token (?t=) fills it in, and
// is spent only when the form is sent (a link preview does not use it up).
func (s *Server) signInPage(w http.ResponseWriter, r *http.Request) {
	pre := postgres.NewToken()
	s.setCookie(w, r, signInCookie, pre, 15*time.Minute)
	s.page(w, r, http.StatusOK, "signin", pageData{Title: "Sign in", CSRF: s.signInCSRF(pre), Token: r.URL.Query().Get("t")})
}

func (s *Server) signInCSRF(pre string) string {
	m := hmac.New(sha256.New, s.csrfNoise)
	m.Write([]byte(pre))
	return hex.EncodeToString(m.Sum(nil))
}

func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	if !s.limiter.allow(s.clientIP(r), time.Now()) {
		s.page(w, r, http.StatusTooManyRequests, "signin", pageData{Title: "Sign in", Message: "Too many sign-in attempts from your address: wait a minute and try again."})
		return
	}
	pre, err := r.Cookie(signInCookie)
	if err != nil || !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(s.signInCSRF(pre.Value))) {
		s.page(w, r, http.StatusForbidden, "error", pageData{Title: "Refused", Message: "This sign-in form is stale or did not come from this site: open your link again."})
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	if i := strings.Index(token, "t="); i >= 0 { // a whole link pasted
		token = token[i+2:]
	}
	var session string
	if s.cfg.AdminToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.AdminToken)) == 1 {
		session, err = s.labels.AdminSession(r.Context(), s.cfg.AdminToken, s.cfg.SessionTTL)
	} else {
		session, _, err = s.labels.SignIn(r.Context(), token, s.cfg.SessionTTL)
	}
	if errors.Is(err, errkind.Unauthenticated) {
		s.page(w, r, http.StatusUnauthorized, "signin", pageData{Title: "Sign in", CSRF: r.PostFormValue("csrf"),
			Message: "This link is unknown, used, expired or revoked. Ask your labeling lead for a new one (instructflow labelers add NAME)."})
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.setCookie(w, r, signInCookie, "", -time.Second)
	s.setCookie(w, r, sessionCookie, session, s.cfg.SessionTTL)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) signOut(w http.ResponseWriter, r *request) {
	if err := s.labels.EndSession(r.Context(), r.token); err != nil {
		s.fail(w, r.Request, err)
		return
	}
	s.setCookie(w, r.Request, sessionCookie, "", -time.Second)
	http.Redirect(w, r.Request, "/signin", http.StatusSeeOther)
}

func (s *Server) clientIP(r *http.Request) string {
	if s.cfg.BehindProxy {
		if f := r.Header.Get("X-Forwarded-For"); f != "" {
			parts := strings.Split(f, ",")
			return strings.TrimSpace(parts[len(parts)-1]) // the address the proxy saw
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limiter allows n attempts per key in each window.
type limiter struct {
	mu     sync.Mutex
	n      int
	window time.Duration
	seen   map[string][]time.Time
	swept  time.Time
}

func newLimiter(n int, window time.Duration) *limiter {
	return &limiter{n: n, window: window, seen: map[string][]time.Time{}}
}

func (l *limiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	recent := l.seen[key][:0]
	for _, t := range l.seen[key] {
		if now.Sub(t) < l.window {
			recent = append(recent, t)
		}
	}
	if len(recent) >= l.n {
		l.seen[key] = recent
		return false
	}
	l.seen[key] = append(recent, now)
	if len(l.seen) > 10000 && now.Sub(l.swept) >= l.window { // forget idle addresses, once a window
		l.swept = now
		for k, ts := range l.seen {
			if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= l.window {
				delete(l.seen, k)
			}
		}
	}
	return true
}

// pageData is what every page template reads.
type pageData struct {
	Title   string
	Message string
	CSRF    string
	Token   string
	Who     postgres.Session
	Data    any
}

func (s *Server) page(w http.ResponseWriter, r *http.Request, status int, name string, d pageData) {
	t, ok := s.pages[name]
	if !ok {
		http.Error(w, "web: no page "+name, http.StatusInternalServerError)
		return
	}
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		s.log.Error("web: render", "page", name, "path", r.URL.Path, "err", err)
		http.Error(w, "the page could not be drawn; the server log says why", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// fail answers an error by its kind.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, title := http.StatusInternalServerError, "Something went wrong"
	switch {
	case errors.Is(err, errkind.Forbidden):
		status, title = http.StatusForbidden, "Not yours"
	case errors.Is(err, errkind.NotFound):
		status, title = http.StatusNotFound, "Not found"
	case errors.Is(err, errkind.BadInput):
		status, title = http.StatusBadRequest, "Not accepted"
	case errors.Is(err, errkind.Conflict):
		status, title = http.StatusConflict, "Already done"
	case errors.Is(err, errkind.Unauthenticated):
		status, title = http.StatusUnauthorized, "Not signed in"
	default:
		s.log.Error("web", "path", r.URL.Path, "err", err)
		err = errors.New("the server could not answer; its log says why")
	}
	s.page(w, r, status, "error", pageData{Title: title, Message: strings.TrimPrefix(err.Error(), "postgres: ")})
}
