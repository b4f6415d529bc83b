package main

import (
	"testing"
	"time"
)

func TestRollupPause(t *testing.T) {
	for _, c := range []struct {
		name           string
		interval, took time.Duration
		want           time.Duration
	}{
		{"first update waits the interval", 30 * time.Second, 0, 30 * time.Second},
		{"a quick build keeps the interval", 30 * time.Second, 2 * time.Second, 30 * time.Second},
		{"a slow build spaces the next", 30 * time.Second, 15 * time.Second, 150 * time.Second},
		{"short interval of the tests", time.Second, 300 * time.Millisecond, 3 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := rollupPause(c.interval, c.took); got != c.want {
				t.Errorf("rollupPause(%s, %s) = %s, want %s", c.interval, c.took, got, c.want)
			}
		})
	}
}
