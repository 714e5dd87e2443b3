package devstack

import (
	"strings"
	"testing"

	"github.com/instructflow/instructflow/config"
)

func TestOptionsFromChecksTheOwner(t *testing.T) {
	for _, tc := range []struct {
		name, ownerURL, want string
	}{
		{"other port", "postgres://o:p@127.0.0.1:6543/instructflow", "INSTRUCTFLOW_POSTGRES_OWNER_URL"},
		{"other database", "postgres://o:p@127.0.0.1:5432/other", "differ only in user and password"},
		{"no password", "postgres://o@127.0.0.1:5432/instructflow", "owner_url has no password"},
		{"same user", "postgres://instructflow:p@127.0.0.1:5432/instructflow", "must not own the schema"},
		{"the superuser", "postgres://postgres:p@127.0.0.1:5432/instructflow", "superuser"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default()
			c.Postgres.OwnerURL = tc.ownerURL
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
	if o.PostgresUser != SuperUser || o.OwnerUser != "instructflow_owner" || o.AppUser != "instructflow" || o.PostgresPassword != o.OwnerPassword {
		t.Errorf("roles %q/%q/%q do not follow the config", o.PostgresUser, o.OwnerUser, o.AppUser)
	}
}
