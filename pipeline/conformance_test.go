package pipeline_test

import (
	"testing"

	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/pipeline/sinktest"
)

// TestFakeSinkConformance: the fake the handler's unit tests use keeps the
// Sink contract, as the ClickHouse sink does (sinks/clickhouse runs the
// same suite).
func TestFakeSinkConformance(t *testing.T) {
	sinktest.Run(t, func(*testing.T) pipeline.Sink { return pipeline.NewFakeSink() })
}
