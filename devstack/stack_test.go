package devstack

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/instructflow/instructflow/config"
)

func TestOptionsFromRefusesRemoteServices(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*config.Config)
		want string
	}{
		{"remote postgres", func(c *config.Config) { c.Postgres.URL = "postgres://u:p@db.example.com:5432/d" }, "postgres.url"},
		{"remote temporal", func(c *config.Config) { c.Temporal.Address = "10.1.2.3:7233" }, "temporal.address"},
		{"tls s3", func(c *config.Config) { c.S3.Endpoint = "https://127.0.0.1:9000" }, "https"},
		{"no password", func(c *config.Config) { c.Postgres.URL = "postgres://u@127.0.0.1:5432/d" }, "no password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default()
			tc.edit(&c)
			_, err := OptionsFrom(c, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
	o, err := OptionsFrom(config.Default(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.PostgresPort != 5432 || o.TemporalPort != 7233 || o.TemporalUIPort != 8233 || o.S3Port != 9000 || o.PostgresDB != "instructflow" {
		t.Errorf("options %+v do not follow the config", o)
	}
}

func TestPortHolderNamesTheProcess(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if portFree(port) {
		t.Fatal("portFree says a held port is free")
	}
	got := portHolder(port)
	if !strings.HasPrefix(got, "pid "+strconv.Itoa(os.Getpid())+" (") {
		t.Errorf("portHolder = %q, want this test's pid", got)
	}
}
