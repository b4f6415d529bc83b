package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bouncer-mail/bouncer/accounts"
	"github.com/bouncer-mail/bouncer/api"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
)

func init() {
	register("keys", "create, list or revoke API keys", runKeys)
}

func runKeys(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 || !(args[0] == "create" || args[0] == "list" || args[0] == "revoke" || args[0] == "--help" || args[0] == "-h") {
		return usagef("keys: want create, list or revoke (see bouncer keys --help)")
	}
	sub := args[0]
	fs := newFlagSet(env, "keys")
	e := &envFlags{fs: fs, getenv: env.getenv}
	cf := addClickHouseFlags(e)
	acct := fs.String("account", "", "create, list: the account (1 to 64 of A-Z a-z 0-9 _ . -)")
	name := fs.String("name", "", "create: a name to recognise the key by")
	scopes := fs.String("scopes", "", "create: comma-separated scopes (default: all)")
	if sub == "--help" || sub == "-h" {
		return parseFlags(fs, env, []string{"--help"})
	}
	if err := parseFlags(fs, env, args[1:]); err != nil {
		return err
	}
	if err := e.err(); err != nil {
		return err
	}
	var keyID string
	switch sub {
	case "create", "list":
		if !schemas.ValidAccountID(*acct) {
			return usagef("keys %s: --account %q: want 1 to 64 of A-Z a-z 0-9 _ . -", sub, *acct)
		}
		if fs.NArg() > 0 {
			return usagef("keys %s takes no arguments; got %q", sub, fs.Args())
		}
	case "revoke":
		if fs.NArg() != 1 || !accounts.ValidKeyID(fs.Arg(0)) {
			return usagef("keys revoke: want one KEY_ID (as keys list shows it)")
		}
		keyID = fs.Arg(0)
	}
	var scopeList []string
	for _, s := range splitList(*scopes) {
		if known := api.Scopes(); !slices.Contains(known, s) {
			return usagef("keys create: unknown scope %q; known: %s", s, strings.Join(known, ", "))
		}
		scopeList = append(scopeList, s)
	}

	store, err := clickhouse.Open(ctx, cf.config())
	if err != nil {
		return err
	}
	defer store.Close()
	now := time.Now()
	switch sub {
	case "create":
		key, id, hash, err := accounts.NewKey(rand.Reader)
		if err != nil {
			return err
		}
		k := accounts.Key{AccountID: *acct, KeyID: id, Hash: hash, Name: *name, Scopes: scopeList, Created: now}
		if err := store.WriteAPIKey(ctx, k, now); err != nil {
			return err
		}
		fmt.Fprintf(env.stderr, "created key %s for account %s; it is shown once:\n", id, *acct)
		fmt.Fprintln(env.stdout, key)
	case "list":
		keys, err := store.APIKeys(ctx, *acct)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY_ID\tNAME\tSCOPES\tCREATED\tSTATE")
		for _, k := range keys {
			state, sc := "active", strings.Join(k.Scopes, ",")
			if k.Revoked {
				state = "revoked"
			}
			if sc == "" {
				sc = "all"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.KeyID, k.Name, sc, k.Created.UTC().Format(time.RFC3339), state)
		}
		if len(keys) == 0 {
			fmt.Fprintln(tw, "(none)")
		}
		return tw.Flush()
	case "revoke":
		k, err := store.RevokeAPIKey(ctx, keyID, now)
		if errors.Is(err, accounts.ErrNoKey) {
			return usagef("keys revoke: no key %q", keyID)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "revoked key %s of account %s\n", k.KeyID, k.AccountID)
	}
	return nil
}
