// Package config holds InstructFlow's typed configuration: where Temporal,
// Postgres and the object store are, and where local state lives.
//
// The values are read once in cmd/ (defaults < YAML file < INSTRUCTFLOW_* env
// < flags), validated here once, and passed down as plain structs. Nothing
// below cmd/ reads the environment or a file for configuration.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Config is the whole configuration of one InstructFlow process.
type Config struct {
	// DataDir holds the local stack's state (Postgres cluster, Temporal's
	// SQLite file, the object store's folder) and logs.
	DataDir  string   `mapstructure:"data_dir" json:"data_dir"`
	Temporal Temporal `mapstructure:"temporal" json:"temporal"`
	Postgres Postgres `mapstructure:"postgres" json:"postgres"`
	S3       S3       `mapstructure:"s3" json:"s3"`
	Worker   Worker   `mapstructure:"worker" json:"worker"`
	Engine   Engine   `mapstructure:"engine" json:"engine"`
	Serve    Serve    `mapstructure:"serve" json:"serve"`
}

// Serve configures `instructflow serve`, the labeling app and dashboard.
type Serve struct {
	// Address is where it listens (host:port).
	Address string `mapstructure:"address" json:"address"`
	// PublicURL is the address people open (behind a proxy, the proxy's
	// https://...); sign-in links start with it. Empty: http://Address.
	PublicURL string `mapstructure:"public_url" json:"public_url"`
	// TLSCert and TLSKey are PEM files; set both to serve HTTPS.
	TLSCert string `mapstructure:"tls_cert" json:"tls_cert"`
	TLSKey  string `mapstructure:"tls_key" json:"tls_key"`
	// AdminToken signs the admin in to the dashboard (16+ characters);
	// empty turns the dashboard off.
	AdminToken string `mapstructure:"admin_token" json:"admin_token"`
	// BehindProxy trusts the proxy's X-Forwarded-For and -Proto headers.
	BehindProxy bool `mapstructure:"behind_proxy" json:"behind_proxy"`
	// LinkTTL is how long a sign-in link stays valid; SessionTTL how long a
	// sign-in lasts.
	LinkTTL    time.Duration `mapstructure:"link_ttl" json:"link_ttl"`
	SessionTTL time.Duration `mapstructure:"session_ttl" json:"session_ttl"`
	// SignInRate is how many sign-in attempts one address may make per
	// minute.
	SignInRate int `mapstructure:"signin_rate" json:"signin_rate"`
}

// SignInURL is the sign-in link of a token.
func (s Serve) SignInURL(token string) string {
	base := s.PublicURL
	if base == "" {
		scheme := "http"
		if s.TLSCert != "" {
			scheme = "https"
		}
		base = scheme + "://" + s.Address
	}
	return strings.TrimSuffix(base, "/") + "/signin?t=" + token
}

// Engine configures the built-in training engine of this process.
type Engine struct {
	// KernelLevel forces the vector unit the engine's C kernels use:
	// avx512, avx2 or generic; empty (the default) picks the fastest this
	// CPU has. It is for measuring or reproducing another kind of CPU on
	// this one: levels round differently in the last bits, so a run's
	// results are bit-identical only on one level. OpenBLAS picks its own
	// kernels at start-up (OPENBLAS_CORETYPE=Haswell forces its AVX2 ones).
	KernelLevel string `mapstructure:"kernel_level" json:"kernel_level"`
}

// KernelLevels are the values engine.kernel_level takes besides empty.
var KernelLevels = []string{"avx512", "avx2", "generic"}

// Worker configures `instructflow worker`.
type Worker struct {
	// MetricsAddress is where the worker serves Prometheus metrics
	// (/metrics); empty turns the endpoint off.
	MetricsAddress string `mapstructure:"metrics_address" json:"metrics_address"`
	// MaxConcurrentStages is how many stages the worker lets compute
	// (train, sample, score, evaluate) at once. A stage trains with all
	// the threads its run spec gives it, so the default is 1: a second
	// run's stage waits, heartbeating, until the first is done computing.
	// Stages waiting for people and the short bookkeeping steps take no
	// slot. Raise it on a worker whose runs set fewer threads than it has
	// cores.
	MaxConcurrentStages int `mapstructure:"max_concurrent_stages" json:"max_concurrent_stages"`
	// StallTimeout is how long a stage may report no new step before the
	// worker fails its attempt (retryably, as "Stalled"; the retry
	// continues from the last checkpoint) and stops heartbeating for it. A
	// hung trainer is otherwise kept alive forever by the heartbeats.
	// Waiting for labels does not count; a stage that reports no steps
	// (evaluation, sampling a labeling batch) must finish within it.
	StallTimeout time.Duration `mapstructure:"stall_timeout" json:"stall_timeout"`
}

// MarshalJSON writes StallTimeout as a duration ("30m0s"), as config files
// and INSTRUCTFLOW_WORKER_STALL_TIMEOUT take it.
func (w Worker) MarshalJSON() ([]byte, error) {
	type plain Worker
	return json.Marshal(struct {
		plain
		StallTimeout string `json:"stall_timeout"`
	}{plain(w), w.StallTimeout.String()})
}

// Temporal says where the Temporal frontend is and which queue workers poll.
type Temporal struct {
	Address   string `mapstructure:"address" json:"address"`
	Namespace string `mapstructure:"namespace" json:"namespace"`
	TaskQueue string `mapstructure:"task_queue" json:"task_queue"`
	// UIPort is the port of the dev server's Web UI (local stack only).
	UIPort int `mapstructure:"ui_port" json:"ui_port"`
}

// Postgres holds the connection URLs of the label and run database: one for
// the runtime role that workers and the CLI log in as (no superuser, only
// the rights the code uses), one for the owner that runs the migrations
// (`instructflow db migrate`) and, in the local stack, creates test
// databases.
type Postgres struct {
	URL      string `mapstructure:"url" json:"url"`
	OwnerURL string `mapstructure:"owner_url" json:"owner_url"`
}

// S3 says where checkpoints are stored.
type S3 struct {
	// Endpoint is a URL such as http://127.0.0.1:9000; https means TLS.
	Endpoint  string `mapstructure:"endpoint" json:"endpoint"`
	Region    string `mapstructure:"region" json:"region"`
	Bucket    string `mapstructure:"bucket" json:"bucket"`
	AccessKey string `mapstructure:"access_key" json:"access_key"`
	SecretKey string `mapstructure:"secret_key" json:"secret_key"`
}

// Default returns the configuration that matches the local stack started by
// `instructflow dev` and the services of docker-compose.yml.
func Default() Config {
	return Config{
		DataDir: ".instructflow",
		Temporal: Temporal{
			Address:   "127.0.0.1:7233",
			Namespace: "default",
			TaskQueue: "instructflow",
			UIPort:    8233,
		},
		Postgres: Postgres{
			URL:      "postgres://instructflow:instructflow@127.0.0.1:5432/instructflow?sslmode=disable",
			OwnerURL: "postgres://instructflow_owner:instructflow_owner@127.0.0.1:5432/instructflow?sslmode=disable",
		},
		S3: S3{
			Endpoint:  "http://127.0.0.1:9000",
			Region:    "us-east-1",
			Bucket:    "instructflow",
			AccessKey: "instructflow",
			SecretKey: "instructflow-secret",
		},
		Serve:  Serve{Address: "127.0.0.1:8080", LinkTTL: 7 * 24 * time.Hour, SessionTTL: 12 * time.Hour, SignInRate: 10},
		Worker: Worker{MetricsAddress: "127.0.0.1:9464", MaxConcurrentStages: 1, StallTimeout: 30 * time.Minute},
	}
}

// Defaults lists every configuration key with its default value, in the
// dotted form used by YAML files, INSTRUCTFLOW_* variables and flags.
func Defaults() map[string]any {
	d := Default()
	return map[string]any{
		"data_dir":                     d.DataDir,
		"temporal.address":             d.Temporal.Address,
		"temporal.namespace":           d.Temporal.Namespace,
		"temporal.task_queue":          d.Temporal.TaskQueue,
		"temporal.ui_port":             d.Temporal.UIPort,
		"postgres.url":                 d.Postgres.URL,
		"postgres.owner_url":           d.Postgres.OwnerURL,
		"s3.endpoint":                  d.S3.Endpoint,
		"s3.region":                    d.S3.Region,
		"s3.bucket":                    d.S3.Bucket,
		"s3.access_key":                d.S3.AccessKey,
		"s3.secret_key":                d.S3.SecretKey,
		"worker.metrics_address":       d.Worker.MetricsAddress,
		"worker.max_concurrent_stages": d.Worker.MaxConcurrentStages,
		"worker.stall_timeout":         d.Worker.StallTimeout,
		"engine.kernel_level":          d.Engine.KernelLevel,
		"serve.address":                d.Serve.Address,
		"serve.public_url":             d.Serve.PublicURL,
		"serve.tls_cert":               d.Serve.TLSCert,
		"serve.tls_key":                d.Serve.TLSKey,
		"serve.admin_token":            d.Serve.AdminToken,
		"serve.behind_proxy":           d.Serve.BehindProxy,
		"serve.link_ttl":               d.Serve.LinkTTL,
		"serve.session_ttl":            d.Serve.SessionTTL,
		"serve.signin_rate":            d.Serve.SignInRate,
	}
}

// EnvName is the environment variable that sets key, e.g.
// INSTRUCTFLOW_POSTGRES_URL for postgres.url.
func EnvName(key string) string {
	return "INSTRUCTFLOW_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// FieldError is one invalid configuration value.
type FieldError struct {
	Key    string // dotted key, e.g. "s3.bucket"
	Reason string // what is wrong and what to do
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("config: %s (%s): %s", e.Key, EnvName(e.Key), e.Reason)
}

var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// Validate checks every value and returns all problems at once, each naming
// its key and the fix.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	if strings.TrimSpace(c.DataDir) == "" {
		bad("data_dir", "is empty; set it to a writable folder such as .instructflow")
	}
	if _, err := HostPort(c.Temporal.Address); err != nil {
		bad("temporal.address", "%v; use host:port such as 127.0.0.1:7233", err)
	}
	if c.Temporal.Namespace == "" {
		bad("temporal.namespace", "is empty; use \"default\" for the dev server")
	}
	if c.Temporal.TaskQueue == "" {
		bad("temporal.task_queue", "is empty; use a name such as \"instructflow\"")
	}
	if a := c.Worker.MetricsAddress; a != "" {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			bad("worker.metrics_address", "%q is not host:port; use e.g. 127.0.0.1:9464, or empty to turn metrics off", a)
		}
	}
	if c.Worker.MaxConcurrentStages < 1 {
		bad("worker.max_concurrent_stages", "is %d; use 1 or more (1, the default, runs one stage at a time)", c.Worker.MaxConcurrentStages)
	}
	if c.Worker.StallTimeout < time.Minute {
		bad("worker.stall_timeout", "is %s; use a duration of 1m or more, longer than a trainer's slowest step or checkpoint (default 30m)", c.Worker.StallTimeout)
	}
	if l := c.Engine.KernelLevel; l != "" && !slices.Contains(KernelLevels, l) {
		bad("engine.kernel_level", "%q is not a kernel level; use one of %s, or empty for the fastest this CPU has", l, strings.Join(KernelLevels, ", "))
	}
	if c.Temporal.UIPort < 1 || c.Temporal.UIPort > 65535 {
		bad("temporal.ui_port", "%d is not a TCP port; use 1-65535 (default 8233)", c.Temporal.UIPort)
	}
	if _, err := pgx.ParseConfig(c.Postgres.URL); err != nil || !strings.HasPrefix(c.Postgres.URL, "postgres") {
		bad("postgres.url", "is not a Postgres URL; use postgres://user:password@host:5432/dbname?sslmode=disable")
	}
	if _, err := pgx.ParseConfig(c.Postgres.OwnerURL); err != nil || !strings.HasPrefix(c.Postgres.OwnerURL, "postgres") {
		bad("postgres.owner_url", "is not a Postgres URL; use postgres://owner:password@host:5432/dbname?sslmode=disable (the role that owns the schema)")
	}
	if _, _, err := c.S3.HostAndTLS(); err != nil {
		bad("s3.endpoint", "%v; use a URL such as http://127.0.0.1:9000", err)
	}
	if !bucketName.MatchString(c.S3.Bucket) || strings.Contains(c.S3.Bucket, "..") {
		bad("s3.bucket", "%q is not a valid bucket name; use 3-63 lower-case letters, digits, '-' or '.'", c.S3.Bucket)
	}
	if c.S3.AccessKey == "" {
		bad("s3.access_key", "is empty; set the object store's access key")
	}
	if c.S3.SecretKey == "" {
		bad("s3.secret_key", "is empty; set the object store's secret key")
	}
	if _, port, err := net.SplitHostPort(c.Serve.Address); err != nil || port == "" {
		bad("serve.address", "%q is not host:port; use e.g. 127.0.0.1:8080", c.Serve.Address)
	}
	if u := c.Serve.PublicURL; u != "" {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad("serve.public_url", "%q is not an http(s) URL; use the address people open, e.g. https://label.example.com", u)
		}
	}
	if (c.Serve.TLSCert == "") != (c.Serve.TLSKey == "") {
		bad("serve.tls_cert", "set both serve.tls_cert and serve.tls_key (PEM files) for HTTPS, or neither")
	}
	if t := c.Serve.AdminToken; t != "" && len(t) < 16 {
		bad("serve.admin_token", "is %d characters; use 16 or more (e.g. openssl rand -hex 16), or empty to turn the dashboard off", len(t))
	}
	if c.Serve.SignInRate < 1 {
		bad("serve.signin_rate", "is %d; use 1 or more sign-in attempts per minute and address (default 10)", c.Serve.SignInRate)
	}
	if c.Serve.LinkTTL < time.Minute || c.Serve.SessionTTL < time.Minute {
		bad("serve.link_ttl", "link_ttl %s and session_ttl %s must each be 1m or more", c.Serve.LinkTTL, c.Serve.SessionTTL)
	}
	return errors.Join(errs...)
}

// HostAndTLS splits the endpoint URL into the host:port the S3 client wants
// and whether to use TLS.
func (s S3) HostAndTLS() (hostport string, secure bool, err error) {
	shown := RedactURL(s.Endpoint) // errors are printed
	u, err := url.Parse(s.Endpoint)
	if err != nil {
		return "", false, fmt.Errorf("%q is not a URL", shown)
	}
	switch u.Scheme {
	case "http":
	case "https":
		secure = true
	default:
		return "", false, fmt.Errorf("%q needs the scheme http:// or https://", shown)
	}
	if u.User != nil {
		return "", false, fmt.Errorf("%q has credentials in it, which the S3 client does not use; give them in s3.access_key and s3.secret_key instead", shown)
	}
	if u.Path != "" && u.Path != "/" {
		return "", false, fmt.Errorf("%q has a path; give the bucket in s3.bucket instead", shown)
	}
	if _, err := HostPort(u.Host); err != nil {
		return "", false, fmt.Errorf("%q: %v", shown, err)
	}
	return u.Host, secure, nil
}

// HostPort parses "host:port" and returns the port.
func HostPort(addr string) (int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("%q is not host:port", addr)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 || host == "" {
		return 0, fmt.Errorf("%q is not host:port with a port in 1-65535", addr)
	}
	return port, nil
}

const redacted = "REDACTED"

// Redacted returns a copy that is safe to print: the passwords of the
// Postgres URLs, any credentials in the S3 endpoint and the S3 secret key
// are replaced.
func (c Config) Redacted() Config {
	if c.S3.SecretKey != "" {
		c.S3.SecretKey = redacted
	}
	if c.Serve.AdminToken != "" {
		c.Serve.AdminToken = redacted
	}
	c.Postgres.URL = RedactURL(c.Postgres.URL)
	c.Postgres.OwnerURL = RedactURL(c.Postgres.OwnerURL)
	c.S3.Endpoint = RedactURL(c.S3.Endpoint)
	return c
}

// secretParams are the query parameters of a Postgres URL that hold a
// secret: the password, and the password of the client's TLS key.
var secretParams = []string{"password", "sslpassword"}

// RedactURL hides the secrets of a URL such as a Postgres DSN or an S3
// endpoint: a password in the user part or in the query (password,
// sslpassword).
func RedactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Opaque != "" {
		return redacted // not a URL (a key=value DSN?): it may hold a secret anywhere
	}
	q := u.Query()
	changed := false
	for k := range q {
		if slices.Contains(secretParams, strings.ToLower(k)) {
			q.Set(k, redacted)
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), redacted)
		}
	}
	return u.String()
}
