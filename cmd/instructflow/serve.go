package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/control"
	"github.com/instructflow/instructflow/storage/postgres"
	"github.com/instructflow/instructflow/web"
)

func newServeCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Serve the labeling app (people rank the responses runs wait for) and the admin dashboard",
		Long: `serve runs the labeling app and the dashboard on serve.address
(127.0.0.1:8080 by default). Labelers sign in with the one-time link that
'instructflow labelers add NAME' prints; the admin signs in to the dashboard
with serve.admin_token. Set serve.tls_cert and serve.tls_key for HTTPS, or
serve.behind_proxy and serve.public_url behind a reverse proxy that ends TLS.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			// People label while Temporal is away; only the run pages need it.
			c, err := control.DialLazy(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			sc := cfg.Serve
			srv, err := web.New(c.DB, c.DB, c, web.Config{AdminToken: sc.AdminToken, Secure: sc.TLSCert != "" || strings.HasPrefix(sc.PublicURL, "https://"),
				BehindProxy: sc.BehindProxy, SessionTTL: sc.SessionTTL, SignInRate: sc.SignInRate}, log)
			if err != nil {
				return err
			}
			if sc.TLSCert != "" { // a bad pair is said now, not at the first request
				if _, err := tls.LoadX509KeyPair(sc.TLSCert, sc.TLSKey); err != nil {
					return fmt.Errorf("serve: serve.tls_cert/serve.tls_key: %w (give a PEM certificate and its key)", err)
				}
			}
			ln, err := net.Listen("tcp", sc.Address)
			if err != nil {
				return fmt.Errorf("serve: %w (set serve.address to a free host:port)", err)
			}
			hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
				WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
			errc := make(chan error, 1)
			go func() {
				if sc.TLSCert != "" {
					errc <- hs.ServeTLS(ln, sc.TLSCert, sc.TLSKey)
				} else {
					errc <- hs.Serve(ln)
				}
			}()
			url := sc.SignInURL("")
			fmt.Fprintf(cmd.ErrOrStderr(), "instructflow serve: listening on %s; sign in at %s\n", ln.Addr(), url[:len(url)-len("?t=")])
			if sc.AdminToken == "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "instructflow serve: no serve.admin_token, so the dashboard is off")
			}
			select {
			case err := <-errc:
				return fmt.Errorf("serve: %w", err)
			case <-cmd.Context().Done():
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := hs.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve: shut down: %w", err)
			}
			return nil
		},
	}
}

func newLabelersCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "labelers",
		Short: "Add, list and revoke the people who label in the labeling app",
	}
	add := dbCmd(a, "add NAME", "Add a labeler (or give one a new link) and print a one-time sign-in link", cobra.ExactArgs(1),
		func(cmd *cobra.Command, db *postgres.DB, args []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			token, err := db.AddLabeler(cmd.Context(), args[0], cfg.Serve.LinkTTL)
			if err != nil {
				return err
			}
			link := struct {
				Labeler string    `json:"labeler"`
				Link    string    `json:"link"`
				Expires time.Time `json:"expires"`
			}{args[0], cfg.Serve.SignInURL(token), time.Now().Add(cfg.Serve.LinkTTL).UTC().Truncate(time.Second)}
			return a.printer(cmd).Print(link, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "%s\n(sign-in link for %s; it works once, until %s; send it privately)\n", link.Link, link.Labeler, link.Expires.Format(time.RFC3339))
				return err
			})
		})
	list := dbCmd(a, "list", "List labelers with their labels and the items they hold", cobra.NoArgs,
		func(cmd *cobra.Command, db *postgres.DB, _ []string) error {
			labs, err := db.LabelerAccounts(cmd.Context())
			if err != nil {
				return err
			}
			return a.printer(cmd).Print(labs, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "LABELER\tLABELS\tHOLDING\tLAST LABEL\tSTATUS")
				for _, l := range labs {
					last, status := "-", "active"
					if l.LastLabel != nil {
						last = l.LastLabel.UTC().Format(time.RFC3339)
					}
					if l.Revoked != nil {
						status = "revoked " + l.Revoked.UTC().Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", l.Name, l.Labels, l.Open, last, status)
				}
				return tw.Flush()
			})
		})
	revoke := dbCmd(a, "revoke NAME", "Sign a labeler out everywhere: links and sessions stop working; labels stay", cobra.ExactArgs(1),
		func(cmd *cobra.Command, db *postgres.DB, args []string) error {
			if err := db.RevokeLabeler(cmd.Context(), args[0]); err != nil {
				return err
			}
			return a.printer(cmd).Print(map[string]string{"revoked": args[0]}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "revoked %s: its links and sessions no longer sign in; 'labelers add %s' gives a new link\n", args[0], args[0])
				return err
			})
		})
	cmd.AddCommand(add, list, revoke)
	return cmd
}
