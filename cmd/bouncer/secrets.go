package main

import (
	"context"
	"fmt"

	"github.com/bouncer-mail/bouncer/internal/secrets"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
	"github.com/bouncer-mail/bouncer/subscription"
)

// webhookFlags are the flags of commands that keep or deliver webhooks.
type webhookFlags struct {
	key   *maskedFlag
	allow *string
}

// maskedFlag is a string flag whose value --help never prints.
type maskedFlag struct{ v string }

func (m *maskedFlag) String() string {
	if m == nil || m.v == "" {
		return ""
	}
	return "(set)"
}
func (m *maskedFlag) Set(s string) error { m.v = s; return nil }

func addWebhookFlags(e *envFlags) *webhookFlags {
	return &webhookFlags{
		key: addSecretKeyFlag(e),
		allow: e.String("webhook-allow-nets", safedial.EnvAllow, "", "`addresses and ports` webhook URLs may reach although they are "+
			"private, loopback or otherwise special: comma-separated host:port or host:first-last entries, host an IP, a CIDR "+
			"or an IPv6 one in brackets (e.g. 127.0.0.1:8080,10.20.0.0/16:443,[::1]:9000-9099); every entry names its ports, "+
			"so that webhooks cannot reach the other services on those networks. By default webhooks reach public addresses only"),
	}
}

// addSecretKeyFlag adds --secret-key (BOUNCER_SECRET_KEY).
func addSecretKeyFlag(e *envFlags) *maskedFlag {
	key := &maskedFlag{v: e.getenv(secrets.EnvKey)}
	e.fs.Var(key, "secret-key", e.usage("`keyring` sealing webhook signing secrets and keys at rest: a base64 32-byte key "+
		"(make one with: openssl rand -base64 32), or id:key,id:key newest first while rotating; the same on every api "+
		"and worker process. Prefer the environment variable (flags show in ps). Without it bouncer api serves "+
		"everything but the webhook routes, which answer 503 saying to set it, and bouncer worker runs no webhook group", secrets.EnvKey))
	return key
}

// keyring returns the keyring of the flags, nil when none was given.
func (f *webhookFlags) keyring() (*secrets.Keyring, error) {
	if f.key.v == "" {
		return nil, nil
	}
	k, err := secrets.ParseKeyring(f.key.v)
	if err != nil {
		return nil, &usageError{fmt.Sprintf("--secret-key / %s: %v", secrets.EnvKey, err)}
	}
	return k, nil
}

// guard returns the SSRF guard of the flags.
func (f *webhookFlags) guard() (safedial.Guard, error) {
	rules, err := safedial.ParseAllowList(*f.allow)
	if err != nil {
		return safedial.Guard{}, &usageError{fmt.Sprintf("--webhook-allow-nets / %v", err)}
	}
	return safedial.Guard{Allow: rules}, nil
}

// The secrets command: make a key, and re-seal subscriptions after adding
// one (the part of key rotation only an operator can do: the API re-seals a
// subscription only when its account changes it).

func init() {
	register("secrets", "make a BOUNCER_SECRET_KEY, or re-seal webhook secrets under its newest key", runSecrets)
}

func runSecrets(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 || !(args[0] == "generate" || args[0] == "reseal" || args[0] == "--help" || args[0] == "-h") {
		return usagef("secrets: want generate or reseal (see bouncer secrets --help)")
	}
	sub := args[0]
	fs := newFlagSet(env, "secrets")
	e := &envFlags{fs: fs, getenv: env.getenv}
	cf := addClickHouseFlags(e)
	wf := &webhookFlags{key: addSecretKeyFlag(e)}
	if sub == "--help" || sub == "-h" {
		return parseFlags(fs, env, args)
	}
	if err := parseFlags(fs, env, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("secrets %s takes no arguments; got %q", sub, fs.Args())
	}
	if sub == "generate" {
		fmt.Fprintln(env.stdout, secrets.GenerateKey())
		return nil
	}
	if err := e.err(); err != nil {
		return err
	}
	keys, err := wf.keyring()
	if err != nil {
		return err
	}
	if keys == nil {
		return usagef("secrets reseal needs BOUNCER_SECRET_KEY: the new key first, then the old ones under their ids (k2:NEWKEY,k1:OLDKEY)")
	}
	cfg := cf.config()
	if err := cfg.Validate(); err != nil {
		return &usageError{err.Error()}
	}
	store, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	n, total, err := subscription.Reseal(ctx, store, keys)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "resealed %d of %d webhook subscriptions under key %q\n", n, total, keys.KeyIDs()[0])
	if n, total, err = subscription.ResealPolicies(ctx, store, keys); err != nil {
		return err
	}
	if total > 0 {
		fmt.Fprintf(env.stdout, "resealed %d of %d webhook security policies under key %q\n", n, total, keys.KeyIDs()[0])
	}
	return nil
}
