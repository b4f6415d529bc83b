package main

import (
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand of bouncer.
type command struct {
	summary string
	run     func(ctx context.Context, env *environment, args []string) error
}

// environment is what a command may touch: injected so tests drive run().
type environment struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

var commands = map[string]command{}

func register(name, summary string, run func(ctx context.Context, env *environment, args []string) error) {
	commands[name] = command{summary: summary, run: run}
}

// usageError marks a mistake in how the command was called (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

func exitCode(err error) int {
	var ue *usageError
	if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	env := &environment{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) < 2 || args[1] == "help" || args[1] == "-h" || args[1] == "--help" {
		if len(args) >= 3 {
			if cmd, ok := commands[args[2]]; ok {
				return cmd.run(ctx, env, []string{"--help"})
			}
		}
		printUsage(stdout)
		return nil
	}
	cmd, ok := commands[args[1]]
	if !ok {
		printUsage(stderr)
		return usagef("unknown command %q", args[1])
	}
	err := cmd.run(ctx, env, args[2:])
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "bouncer: an email-event pipeline (Kafka in, bounces classified, ClickHouse out).")
	fmt.Fprintln(w, "\nUsage: bouncer COMMAND [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun `bouncer COMMAND --help` for a command's flags and examples.")
}

// help holds each command's usage text, help/NAME.txt: what it does, its
// guarantees and examples (the flags follow it in --help).
//
//go:embed help/*.txt
var help embed.FS

// newFlagSet returns a FlagSet whose --help prints the command's usage
// text and flags.
func newFlagSet(env *environment, name string) *flag.FlagSet {
	usage, err := help.ReadFile("help/" + name + ".txt")
	if err != nil {
		panic("no usage text for " + name) // a test runs every command's --help
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), strings.TrimSpace(string(usage)))
		fmt.Fprintln(fs.Output(), "\nFlags:")
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses and turns flag errors into usage errors; --help output
// goes to stdout so it can be paged.
func parseFlags(fs *flag.FlagSet, env *environment, args []string) error {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			fs.SetOutput(env.stdout)
			fs.Usage()
			return flag.ErrHelp
		}
	}
	if err := fs.Parse(args); err != nil {
		return &usageError{err.Error()}
	}
	return nil
}
