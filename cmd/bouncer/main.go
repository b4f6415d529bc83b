// Command bouncer runs the bouncer email-event pipeline: workers that consume
// delivery events from Kafka, classify bounces and write ClickHouse, and the
// tools around them. Run `bouncer help` for the commands.
package main

import (
	"context"
	"fmt"
	"os"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bouncer:", err)
		os.Exit(exitCode(err))
	}
}
