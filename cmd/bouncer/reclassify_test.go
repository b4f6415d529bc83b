package main

import (
	"strings"
	"testing"
)

func TestReclassifyUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no since", []string{"reclassify"}, "--since is required"},
		{"bad since", []string{"reclassify", "--since", "yesterday"}, "--since"},
		{"until before since", []string{"reclassify", "--since", "2026-11-20", "--until", "2026-11-19"}, "is not after"},
		{"bad account", []string{"reclassify", "--since", "2026-11-20", "--account", "a b"}, "--account"},
		{"chunk", []string{"reclassify", "--since", "2026-11-20", "--chunk", "0"}, "--chunk"},
		{"examples", []string{"reclassify", "--since", "2026-11-20", "--examples", "4"}, "--examples"},
		{"wait", []string{"reclassify", "--since", "2026-11-20", "--wait", "0s"}, "--wait"},
		{"an argument", []string{"reclassify", "--since", "2026-11-20", "x"}, "no arguments"},
		{"unmatched with a text", []string{"classify", "--unmatched", "x"}, "no text argument"},
		{"unmatched limit", []string{"classify", "--unmatched", "--limit", "0"}, "--limit"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runCmd(t, "", tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) || exitCode(err) != 2 {
				t.Fatalf("err = %v (exit %d), want a usage error with %q", err, exitCode(err), tt.want)
			}
		})
	}
}
