package clickhouse

import (
	"testing"

	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/pipeline/sinktest"
)

// TestSinkConformance: the ClickHouse sink keeps the Sink contract the
// pipeline's fake is held to (pipeline/sinktest); one database, a topic
// per test.
func TestSinkConformance(t *testing.T) {
	s := openTestStore(t)
	sinktest.Run(t, func(*testing.T) pipeline.Sink { return s })
}
