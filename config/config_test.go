package config

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateNamesEveryBadKey(t *testing.T) {
	c := Default()
	c.Temporal.Address = "no-port"
	c.S3.Bucket = "x"
	c.S3.SecretKey = ""
	err := c.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"temporal.address", "INSTRUCTFLOW_TEMPORAL_ADDRESS", "host:port", "s3.bucket", "s3.secret_key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestS3Endpoint(t *testing.T) {
	for _, tc := range []struct {
		endpoint string
		host     string
		secure   bool
		bad      bool
	}{
		{"http://127.0.0.1:9000", "127.0.0.1:9000", false, false},
		{"https://s3.example.com:443", "s3.example.com:443", true, false},
		{"127.0.0.1:9000", "", false, true},
		{"http://127.0.0.1:9000/bucket", "", false, true},
		{"http://127.0.0.1", "", false, true},
	} {
		host, secure, err := S3{Endpoint: tc.endpoint}.HostAndTLS()
		if (err != nil) != tc.bad || host != tc.host || secure != tc.secure {
			t.Errorf("%s: got %q %v %v", tc.endpoint, host, secure, err)
		}
	}
}

func TestRedacted(t *testing.T) {
	c := Default()
	c.Postgres.URL = "postgres://u:hunter2@h:5432/d?sslmode=disable"
	r := c.Redacted()
	if strings.Contains(r.Postgres.URL, "hunter2") || r.S3.SecretKey == c.S3.SecretKey {
		t.Fatalf("secrets survive redaction: %+v", r)
	}
	if r.Postgres.URL != "postgres://u:REDACTED@h:5432/d?sslmode=disable" {
		t.Errorf("redacted url %q", r.Postgres.URL)
	}
	if got := RedactURL("postgres://h/d?password=hunter2"); strings.Contains(got, "hunter2") {
		t.Errorf("password in query survived: %q", got)
	}
	if c.S3.SecretKey == "REDACTED" {
		t.Error("Redacted changed the original")
	}
}

func TestRedactedCoversEverySecret(t *testing.T) {
	c := Default()
	c.Postgres.URL = "postgres://app:hunter2@h:5432/d?sslmode=verify-full&sslkey=/k.pem&sslpassword=keypass1"
	c.Postgres.OwnerURL = "postgres://owner:ownerpass@h:5432/d?SSLPassword=keypass2"
	c.S3.Endpoint = "http://access:s3pass@127.0.0.1:9000"
	r := c.Redacted()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"hunter2", "keypass1", "ownerpass", "keypass2", "s3pass", c.S3.SecretKey} {
		if strings.Contains(string(b), secret) {
			t.Errorf("%q survives redaction: %s", secret, b)
		}
	}
	if !strings.Contains(r.Postgres.URL, "sslkey=%2Fk.pem") || !strings.Contains(r.S3.Endpoint, "127.0.0.1:9000") {
		t.Errorf("redaction hid more than the secrets: %s", b)
	}
	if got := RedactURL("host=h password=hunter2"); strings.Contains(got, "hunter2") {
		t.Errorf("a key=value DSN keeps its password: %q", got)
	}
}

func TestS3EndpointWithCredentialsIsRefused(t *testing.T) {
	_, _, err := S3{Endpoint: "http://access:s3pass@127.0.0.1:9000"}.HostAndTLS()
	if err == nil || strings.Contains(err.Error(), "s3pass") || !strings.Contains(err.Error(), "s3.secret_key") {
		t.Fatalf("got %v, want a refusal that names s3.secret_key and does not print the password", err)
	}
}
