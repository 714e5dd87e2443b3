package main

import (
	"bufio"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/instructflow/instructflow/config"
)

// loadCompose parses a compose file as `docker compose` would, with env as
// the only variables (nil: interpolation off, ${X} references kept as text).
func loadCompose(t *testing.T, file string, env []string) (*types.Project, error) {
	t.Helper()
	root, _ := filepath.Abs("../..")
	// Every profile: the GPU worker pool's services are checked too.
	o := []cli.ProjectOptionsFn{cli.WithWorkingDirectory(root), cli.WithName("instructflow"), cli.WithProfiles([]string{"*"})}
	if env == nil {
		o = append(o, cli.WithInterpolation(false))
	} else {
		o = append(o, cli.WithEnv(env))
	}
	opts, err := cli.NewProjectOptions([]string{file}, o...)
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

var (
	// required is the only form a variable may take in the compose file: no
	// default, and a message for when it is unset or empty.
	required = regexp.MustCompile(`^\$\{([A-Z0-9_]+):\?[^}]+\}$`)
	anyRef   = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)([^}]*)\}`)
	bareRef  = regexp.MustCompile(`\$[A-Za-z_][A-Za-z0-9_]*`)
	secretly = regexp.MustCompile(`(?i)password|passwd|pwd|secret`)
)

// composeProblems lists what makes a compose file unsafe to run as it is:
// ports published on all interfaces, and secrets written into the file
// (or given a default) instead of taken from .env.
func composeProblems(t *testing.T, file string) []string {
	t.Helper()
	p, err := loadCompose(t, file, nil)
	if err != nil {
		t.Fatalf("%s does not parse: %v", file, err)
	}
	var problems []string
	for _, s := range p.Services {
		// A port with no host port is still published, on a random one.
		for _, pc := range s.Ports {
			if pc.HostIP != "127.0.0.1" {
				port := pc.Published
				if port == "" {
					port = fmt.Sprintf("%d as a random host port", pc.Target)
				}
				problems = append(problems, fmt.Sprintf("%s publishes port %s on %q, not 127.0.0.1", s.Name, port, pc.HostIP))
			}
		}
		if s.NetworkMode == "host" {
			problems = append(problems, fmt.Sprintf("%s uses the host's network, which publishes every port it listens on", s.Name))
		}
		for k, v := range s.Environment {
			if v == nil {
				continue
			}
			if secretly.MatchString(k) && !required.MatchString(*v) {
				problems = append(problems, fmt.Sprintf("%s: %s is %q, not a ${VAR:?message} reference", s.Name, k, *v))
			}
			if u, err := url.Parse(*v); err == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok && !required.MatchString(pw) {
					problems = append(problems, fmt.Sprintf("%s: %s holds the password %q, not a ${VAR:?message} reference", s.Name, k, pw))
				}
			}
		}
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range anyRef.FindAllStringSubmatch(string(raw), -1) {
		if !strings.HasPrefix(m[2], ":?") {
			problems = append(problems, fmt.Sprintf("%s is used without :? (a default, or no error when unset)", m[0]))
		}
	}
	for _, m := range bareRef.FindAllString(string(raw), -1) {
		problems = append(problems, fmt.Sprintf("%s is used without :? (no error when unset)", m))
	}
	sort.Strings(problems)
	return problems
}

// envExample reads the variables .env.example names, with their values.
func envExample(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf(".env.example missing: %v", err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf(".env.example: %q is not NAME=value", line)
			continue
		}
		vars[k] = v
	}
	return vars
}

// TestComposeIsSafeByDefault checks docker-compose.yml for what a security
// review looks for first: every port published on 127.0.0.1 only, every
// secret a required variable from .env, and .env.example naming each one
// (empty, and .env ignored by git).
func TestComposeIsSafeByDefault(t *testing.T) {
	root, _ := filepath.Abs("../..")
	compose := filepath.Join(root, "docker-compose.yml")

	// The checks find what was wrong with the file before.
	old := composeProblems(t, filepath.Join("testdata", "compose-unsafe.yml"))
	for _, want := range []string{
		`postgres publishes port 5432 on ""`, `worker publishes port 9464 on ""`, `minio publishes port 9001 on ""`,
		`postgres: POSTGRES_PASSWORD is "instructflow"`, `temporal: POSTGRES_PWD is "instructflow"`,
		`minio: MINIO_ROOT_PASSWORD is "instructflow-secret"`, `worker: INSTRUCTFLOW_S3_SECRET_KEY is "instructflow-secret"`,
		`worker: INSTRUCTFLOW_POSTGRES_URL holds the password "instructflow"`,
	} {
		if !slices.ContainsFunc(old, func(p string) bool { return strings.HasPrefix(p, want) }) {
			t.Errorf("the checks miss %q in testdata/compose-unsafe.yml; they found:\n%s", want, strings.Join(old, "\n"))
		}
	}
	if got := composeProblems(t, filepath.Join("testdata", "compose-default.yml")); !slices.ContainsFunc(got, func(p string) bool {
		return strings.Contains(p, "${POSTGRES_PASSWORD:-instructflow} is used without :?")
	}) {
		t.Errorf("a ${VAR:-default} secret: problems %q, want one about the default", got)
	}

	for _, p := range composeProblems(t, compose) {
		t.Error("docker-compose.yml: " + p)
	}

	raw, err := os.ReadFile(compose)
	if err != nil {
		t.Fatal(err)
	}
	example := envExample(t, filepath.Join(root, ".env.example"))
	used := map[string]bool{}
	for _, m := range anyRef.FindAllStringSubmatch(string(raw), -1) {
		used[m[1]] = true
		if _, ok := example[m[1]]; !ok {
			t.Errorf("docker-compose.yml uses %s, which .env.example does not name", m[1])
		}
	}
	for k, v := range example {
		if !used[k] {
			t.Errorf(".env.example names %s, which docker-compose.yml does not use", k)
		}
		if v != "" {
			t.Errorf(".env.example ships a value for %s; leave it empty so that compose refuses to start until it is set", k)
		}
	}
	// .env stays out of git and out of the image's build context.
	for _, ignore := range []string{".gitignore", ".dockerignore"} {
		b, _ := os.ReadFile(filepath.Join(root, ignore))
		if !slices.ContainsFunc(strings.Split(string(b), "\n"), func(l string) bool { return l == ".env" || l == "/.env" }) {
			t.Errorf("%s does not list .env", ignore)
		}
	}

	// Unset, each variable stops compose with a message that says where to
	// set it.
	_, err = loadCompose(t, compose, []string{})
	if err == nil || !strings.Contains(err.Error(), "in .env (see .env.example)") {
		t.Errorf("compose without .env: %v, want an error saying to set the variable in .env", err)
	}
}

// TestComposeAgreesWithConfig parses docker-compose.yml with the variables
// of .env.example filled in and checks that the CLI on the host, with the
// default addresses, reaches every service it publishes, and that the
// migrations and the worker are valid configurations pointing at the
// compose services with the credentials those services were given.
func TestComposeAgreesWithConfig(t *testing.T) {
	clearEnv(t)
	root, _ := filepath.Abs("../..")
	var env []string
	secrets := map[string]string{}
	for k := range envExample(t, filepath.Join(root, ".env.example")) {
		secrets[k] = "test" + strings.ToLower(strings.ReplaceAll(k, "_", ""))
		env = append(env, k+"="+secrets[k])
	}
	p, err := loadCompose(t, filepath.Join(root, "docker-compose.yml"), env)
	if err != nil {
		t.Fatalf("docker-compose.yml does not load with .env.example filled in: %v", err)
	}
	for _, name := range []string{"postgres", "temporal", "temporal-ui", "minio", "migrate", "worker"} {
		if _, err := p.GetService(name); err != nil {
			t.Errorf("service %s missing", name)
		}
	}
	def := config.Default()
	pgURL, _ := url.Parse(def.Postgres.URL)
	s3URL, _ := url.Parse(def.S3.Endpoint)
	tPort, _ := config.HostPort(def.Temporal.Address)
	pgPort, _ := strconv.Atoi(pgURL.Port())
	s3Port, _ := strconv.Atoi(s3URL.Port())
	published := map[string]int{"postgres": pgPort, "temporal": tPort, "temporal-ui": def.Temporal.UIPort, "minio": s3Port}
	for svc, port := range published {
		s, err := p.GetService(svc)
		if err != nil {
			continue
		}
		if !slices.ContainsFunc(s.Ports, func(pc types.ServicePortConfig) bool { return pc.Published == strconv.Itoa(port) }) {
			t.Errorf("service %s does not publish port %d that the default config uses", svc, port)
		}
	}

	// The roles the init script creates are the ones the URLs log in as.
	pg, _ := p.GetService("postgres")
	initScript := ""
	for _, v := range pg.Volumes {
		if strings.HasPrefix(v.Target, "/docker-entrypoint-initdb.d/") {
			b, err := os.ReadFile(v.Source)
			if err != nil {
				t.Fatalf("the postgres init script: %v", err)
			}
			initScript = string(b)
		}
	}
	if initScript == "" {
		t.Fatal("postgres mounts no init script to create the owner and runtime roles")
	}
	roleURL := func(svc types.ServiceConfig, key string) (user, password string) {
		u, err := url.Parse(env1(svc, key))
		if err != nil || u.User == nil {
			t.Errorf("%s: %s = %q is not a URL with credentials", svc.Name, key, env1(svc, key))
			return "", ""
		}
		pw, _ := u.User.Password()
		if !strings.Contains(initScript, "CREATE ROLE "+u.User.Username()+" LOGIN NOSUPERUSER") {
			t.Errorf("%s: %s logs in as %q, which the init script does not create as a NOSUPERUSER login role", svc.Name, key, u.User.Username())
		}
		return u.User.Username(), pw
	}
	migrate, _ := p.GetService("migrate")
	w, _ := p.GetService("worker")
	ownerUser, ownerPW := roleURL(migrate, "INSTRUCTFLOW_POSTGRES_OWNER_URL")
	runtimeUser, runtimePW := roleURL(w, "INSTRUCTFLOW_POSTGRES_URL")
	if ownerUser == runtimeUser {
		t.Errorf("the owner and the runtime role are both %q", ownerUser)
	}
	if ownerPW != env1(pg, "DB_OWNER_PASSWORD") || runtimePW != env1(pg, "DB_RUNTIME_PASSWORD") {
		t.Error("the passwords in the URLs differ from those the init script sets")
	}
	if u, p := roleURL(migrate, "INSTRUCTFLOW_POSTGRES_URL"); u != runtimeUser || p != runtimePW {
		t.Error("migrate and worker disagree on the runtime role")
	}
	if _, ok := w.Environment["INSTRUCTFLOW_POSTGRES_OWNER_URL"]; ok {
		t.Error("the worker holds the owner's credentials; only migrate needs them")
	}
	if d, ok := w.DependsOn["migrate"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Error("the worker does not wait for the migrations to complete")
	}
	temporal, _ := p.GetService("temporal")
	if env1(temporal, "POSTGRES_PWD") != env1(pg, "POSTGRES_PASSWORD") {
		t.Error("temporal's Postgres password differs from the superuser's")
	}
	minio, _ := p.GetService("minio")
	if env1(minio, "MINIO_ROOT_PASSWORD") != env1(w, "INSTRUCTFLOW_S3_SECRET_KEY") || env1(minio, "MINIO_ROOT_USER") != env1(w, "INSTRUCTFLOW_S3_ACCESS_KEY") {
		t.Error("the worker's s3 credentials differ from minio's root user")
	}

	// Each program's environment: only known keys, valid, pointing at the
	// services.
	if w.Build == nil || migrate.Build == nil {
		t.Error("worker or migrate has no build (Dockerfile)")
	} else if _, err := os.Stat(filepath.Join(root, "Dockerfile")); err != nil {
		t.Error("Dockerfile missing")
	}
	known := map[string]bool{}
	for k := range config.Defaults() {
		known[config.EnvName(k)] = true
	}
	// The GPU pool: the torch trainer's image, the host's GPUs, a task
	// queue of its own for the stages routed to it, the same object store.
	gpu, err := p.GetService("worker-gpu")
	if err != nil {
		t.Fatal("service worker-gpu (profile gpu) missing")
	}
	if gpu.Build == nil || gpu.Build.Target != "torch-worker" {
		t.Error("worker-gpu is not built from the Dockerfile's torch-worker stage")
	}
	if r := gpu.Deploy; r == nil || r.Resources.Reservations == nil || len(r.Resources.Reservations.Devices) == 0 ||
		!slices.Contains(r.Resources.Reservations.Devices[0].Capabilities, "gpu") {
		t.Error("worker-gpu reserves no GPU")
	}
	if q := env1(gpu, "INSTRUCTFLOW_TEMPORAL_TASK_QUEUE"); q == "" || q == env1(w, "INSTRUCTFLOW_TEMPORAL_TASK_QUEUE") {
		t.Errorf("worker-gpu polls task queue %q: give it one of its own", q)
	}
	if env1(gpu, "INSTRUCTFLOW_S3_SECRET_KEY") != env1(minio, "MINIO_ROOT_PASSWORD") || env1(gpu, "INSTRUCTFLOW_POSTGRES_URL") != env1(w, "INSTRUCTFLOW_POSTGRES_URL") {
		t.Error("worker-gpu reaches the object store or Postgres with other credentials than the worker")
	}
	for _, svc := range []types.ServiceConfig{migrate, w, gpu} {
		t.Run(svc.Name, func(t *testing.T) {
			clearEnv(t)
			for k := range svc.Environment {
				if !known[k] {
					t.Errorf("%s sets unknown variable %s", svc.Name, k)
				}
				t.Setenv(k, env1(svc, k))
			}
			m, err := showConfig(t)
			if err != nil {
				t.Fatalf("the %s environment is not a valid config: %v", svc.Name, err)
			}
			want := []struct{ section, key, want string }{
				{"postgres", "url", "postgres://" + runtimeUser + ":REDACTED@postgres:5432/instructflow?sslmode=disable"},
			}
			queue := def.Temporal.TaskQueue
			if svc.Name == "worker-gpu" {
				queue = env1(gpu, "INSTRUCTFLOW_TEMPORAL_TASK_QUEUE")
			}
			if svc.Name == "migrate" {
				want = append(want, struct{ section, key, want string }{"postgres", "owner_url", "postgres://" + ownerUser + ":REDACTED@postgres:5432/instructflow?sslmode=disable"})
			} else {
				want = append(want, []struct{ section, key, want string }{
					{"temporal", "address", "temporal:" + strconv.Itoa(tPort)},
					{"temporal", "namespace", def.Temporal.Namespace},
					{"temporal", "task_queue", queue},
					{"s3", "endpoint", "http://minio:" + s3URL.Port()},
					{"s3", "bucket", def.S3.Bucket},
					{"s3", "access_key", def.S3.AccessKey},
				}...)
			}
			for _, c := range want {
				if got := m[c.section][c.key]; got != c.want {
					t.Errorf("%s %s.%s = %v, want %v", svc.Name, c.section, c.key, got, c.want)
				}
			}
		})
	}
}

func env1(s types.ServiceConfig, key string) string {
	if v := s.Environment[key]; v != nil {
		return *v
	}
	return ""
}
