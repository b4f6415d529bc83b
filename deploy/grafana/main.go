// Command grafana generates bouncer's Grafana dashboards (ingest, webhooks,
// API) with Grafana's foundation SDK and writes them as JSON to
// dashboards/, ready to import or provision. It lives in a module of its
// own so the SDK stays out of bouncer's main module.
//
//	cd deploy/grafana && go run .          # rewrite dashboards/*.json
//	cd deploy/grafana && go run . -check   # fail if they are not the generator's output
//
// Every query reads a recording rule of deploy/prometheus/recording.yml or a
// bouncer_ series directly, without Grafana variables, so cmd/bouncer's
// TestPrometheus evaluates each one against a real Prometheus.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

func main() {
	out := flag.String("out", "dashboards", "folder to write the dashboards to")
	check := flag.Bool("check", false, "only check that the files in -out are what the generator writes")
	flag.Parse()
	if err := run(*out, *check); err != nil {
		fmt.Fprintln(os.Stderr, "grafana:", err)
		os.Exit(1)
	}
}

func run(out string, check bool) error {
	for _, d := range dashboards() {
		b, err := render(d)
		if err != nil {
			return fmt.Errorf("%s: %w", d.uid, err)
		}
		path := filepath.Join(out, d.file)
		if check {
			old, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(old, b) {
				return fmt.Errorf("%s is not the generator's output: run `cd deploy/grafana && go run .` and commit it", path)
			}
			continue
		}
		if err := os.MkdirAll(out, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// board is one dashboard: rows of panels.
type board struct {
	file, uid, title, description string
	rows                          []row
}

type row struct {
	title  string
	panels []panel
}

// panel is a time series, or a stat showing the latest value.
type panel struct {
	title, description, unit string
	// stat shows the latest value; signed lets a time series go below 0.
	stat, signed bool
	queries      []query
}

type query struct{ expr, legend string }

func dashboards() []board {
	return []board{ingest(), webhooks(), apiBoard()}
}

func ingest() board {
	return board{
		file: "ingest.json", uid: "bouncer-ingest", title: "bouncer / ingest",
		description: "The sink group (Kafka to ClickHouse), the consumer groups' lag and commits, dead letters, the suppression index and bounce forwarding. Alerts and runbooks: docs/operations.md.",
		rows: []row{
			{"Consumer groups", []panel{
				{title: "Lag by group", unit: "short", description: "Messages behind the topic's high-water mark, summed over partitions (bouncer:consumer_lag_messages:sum). Alerts: BouncerConsumerLagHigh, BouncerConsumerLagGrowing.",
					queries: []query{{"bouncer:consumer_lag_messages:sum", "{{group}}"}}},
				{title: "Lag growth", unit: "short", signed: true, description: "Messages per second the lag grows (positive) or shrinks, over 10 minutes.",
					queries: []query{{"bouncer:consumer_lag_messages:deriv10m", "{{group}}"}}},
				{title: "Longest time since a partition committed", unit: "s", description: "Per group, the partition that committed longest ago (or was assigned, when nothing came since). High with lag: BouncerCommitStalled.",
					queries: []query{{"bouncer:consumer_commit_age_seconds:max", "{{group}}"}}},
				{title: "Batch retries", unit: "ops", description: "Failed batch attempts retried per second, by group. Alert: BouncerBatchRetries.",
					queries: []query{{"bouncer:consumer_batch_retries:rate5m", "{{group}}"}}},
			}},
			{"Sink", []panel{
				{title: "Messages consumed and events written", unit: "ops",
					queries: []query{{"bouncer:sink_messages_consumed:rate5m", "consumed"}, {"bouncer:sink_events_written:rate5m", "written"}}},
				{title: "Dead letters by reason", unit: "ops", description: "Bad input sent to the dead-letter topic and table. List them with bouncer deadletters list.",
					queries: []query{{"bouncer:sink_dead_letters:rate5m", "{{reason}}"}}},
				{title: "Dead-letter ratio", unit: "percentunit", stat: true, description: "Dead letters per consumed message over 5 minutes. Alert above 5%: BouncerDeadLetterRateHigh.",
					queries: []query{{"bouncer:sink_dead_letter_ratio:rate5m", "ratio"}}},
				{title: "Insert errors", unit: "ops", description: "Failed inserts into the events table (retried). Alert: BouncerInsertsFailing.",
					queries: []query{{"bouncer:sink_insert_errors:rate5m", "errors"}}},
				{title: "Insert latency (p99)", unit: "s",
					queries: []query{{"bouncer:sink_insert_seconds:p99_5m", "p99"}}},
			}},
			{"Suppression index and forwarding", []panel{
				{title: "Suppression index lag", unit: "short", description: "Changes of the change-log topic not yet in each process's in-memory index. Alert: BouncerSuppressionIndexBehind.",
					queries: []query{{"bouncer:suppression_index_lag_messages:sum", "{{job}} {{instance}}"}}},
				{title: "Forwarded bounce emails", unit: "ops", description: "Reports and digests sent, rejected or given up. Alert on any failure: BouncerForwardingFailures.",
					queries: []query{{"bouncer:forward_emails:rate15m", "{{kind}} {{result}}"}}},
				{title: "Bouncer alerts firing", unit: "short", stat: true,
					queries: []query{{`count(ALERTS{alertstate="firing",alertname=~"Bouncer.*"}) or vector(0)`, "firing"}}},
			}},
		},
	}
}

func webhooks() board {
	return board{
		file: "webhooks.json", uid: "bouncer-webhooks", title: "bouncer / webhooks",
		description: "Webhook delivery: attempts by result, queues, retry tiers, circuits and endpoint states. Alerts and runbooks: docs/operations.md.",
		rows: []row{
			{"Delivery", []panel{
				{title: "Attempts and parkings by result", unit: "ops",
					queries: []query{{"bouncer:webhook_deliveries:rate5m", "{{result}}"}}},
				{title: "Attempt duration (p99)", unit: "s",
					queries: []query{{"histogram_quantile(0.99, sum by (le) (rate(bouncer_webhook_attempt_seconds_bucket[5m])))", "p99"}}},
				{title: "Event to delivery (p99)", unit: "s", description: "From an event's timestamp to the 2xx of the batch that carried it.",
					queries: []query{{"histogram_quantile(0.99, sum by (le) (rate(bouncer_webhook_end_to_end_seconds_bucket[5m])))", "p99"}}},
				{title: "Events queued in memory", unit: "short", description: "Events waiting in the workers' endpoint queues. Alert: BouncerWebhookBacklogHigh.",
					queries: []query{{"bouncer:webhook_queued_events:sum", "queued"}}},
			}},
			{"Retry tiers", []panel{
				{title: "Batches waiting per tier", unit: "short", description: "Alert: BouncerWebhookRetryBacklogHigh.",
					queries: []query{{"bouncer:webhook_retry_tier_lag:sum", "{{tier}}"}}},
				{title: "Oldest parked batch", unit: "s", description: "Age of the oldest batch a tier's consumer holds. Alert: BouncerWebhookParkedBatchOld.",
					queries: []query{{"bouncer:webhook_parked_oldest_age_seconds:max", "{{tier}}"}}},
				{title: "Past due", unit: "s", description: "How far past its due time the oldest batch of a tier is; stays near 0 when healthy. Alert: BouncerWebhookRetryOverdue.",
					queries: []query{{"bouncer:webhook_parked_overdue_seconds:max", "{{tier}}"}}},
				{title: "Park errors", unit: "ops", description: "Failed writes to the retry tiers or dead letters. Alert: BouncerWebhookParkFailing.",
					queries: []query{{"bouncer:webhook_park_errors:rate5m", "errors"}}},
			}},
			{"Endpoints", []panel{
				{title: "Circuits by state", unit: "short", description: "Alert when more than a quarter are not closed: BouncerWebhookCircuitsOpen.",
					queries: []query{{"bouncer:webhook_circuits:sum", "{{state}}"}}},
				{title: "Subscriptions by state", unit: "short", stat: true,
					queries: []query{{"bouncer:webhook_endpoints:max", "{{state}}"}}},
				{title: "Endpoints disabled in the last hour", unit: "short", stat: true, description: "Alert above 3: BouncerWebhookEndpointsDisabled.",
					queries: []query{{"bouncer:webhook_endpoints_disabled:increase1h", "{{reason}}"}}},
			}},
		},
	}
}

func apiBoard() board {
	return board{
		file: "api.json", uid: "bouncer-api", title: "bouncer / API",
		description: "bouncer api: requests by route pattern and status, errors and latency, from its ops port. Alerts and runbooks: docs/operations.md.",
		rows: []row{
			{"Traffic", []panel{
				{title: "Requests by route", unit: "reqps",
					queries: []query{{"sum by (method, route) (bouncer:api_requests:rate5m)", "{{method}} {{route}}"}}},
				{title: "Requests by status", unit: "reqps",
					queries: []query{{"sum by (code) (bouncer:api_requests:rate5m)", "{{code}}"}}},
				{title: "Requests in flight", unit: "short",
					queries: []query{{"sum(bouncer_api_requests_in_flight)", "in flight"}}},
			}},
			{"Errors and latency", []panel{
				{title: "5xx ratio", unit: "percentunit", stat: true, description: "Alert above 5%: BouncerAPIErrors.",
					queries: []query{{"bouncer:api_5xx_ratio:rate5m", "5xx"}}},
				{title: "Errors by route and status", unit: "reqps", description: "4xx and 5xx answers; unmatched is a path no route serves.",
					queries: []query{{`sum by (route, code) (bouncer:api_requests:rate5m{code=~"[45].."})`, "{{code}} {{route}}"}}},
				{title: "Latency (p50, p99)", unit: "s", description: "Alert when p99 is above 5s: BouncerAPILatencyHigh.",
					queries: []query{
						{"histogram_quantile(0.5, sum by (le) (rate(bouncer_api_request_duration_seconds_bucket[5m])))", "p50"},
						{"bouncer:api_request_duration_seconds:p99_5m", "p99"},
					}},
				{title: "Latency by route (p99)", unit: "s",
					queries: []query{{"bouncer:api_request_duration_seconds_by_route:p99_5m", "{{method}} {{route}}"}}},
			}},
		},
	}
}

// datasource is the dashboard's Prometheus, chosen on import.
var datasource = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

func render(d board) ([]byte, error) {
	b := dashboard.NewDashboardBuilder(d.title).
		Uid(d.uid).
		Description(d.description).
		Tags([]string{"bouncer"}).
		Refresh("30s").
		Time("now-6h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Prometheus").Type("prometheus"))
	for _, r := range d.rows {
		b = b.WithRow(dashboard.NewRowBuilder(r.title))
		for _, p := range r.panels {
			b = b.WithPanel(build(p))
		}
	}
	dash, err := b.Build()
	if err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(dash, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

func build(p panel) cog.Builder[dashboard.Panel] {
	targets := make([]cog.Builder[variants.Dataquery], len(p.queries))
	for i, q := range p.queries {
		targets[i] = prometheus.NewDataqueryBuilder().
			Datasource(datasource).
			RefId(string(rune('A' + i))).
			Expr(q.expr).
			LegendFormat(q.legend)
	}
	if p.stat {
		s := stat.NewPanelBuilder().Title(p.title).Description(p.description).Unit(p.unit).
			Datasource(datasource).Height(6).Span(6)
		for _, t := range targets {
			s = s.WithTarget(t)
		}
		return s
	}
	ts := timeseries.NewPanelBuilder().Title(p.title).Description(p.description).Unit(p.unit).
		Datasource(datasource).Height(8).Span(12)
	if !p.signed {
		ts = ts.Min(0)
	}
	for _, t := range targets {
		ts = ts.WithTarget(t)
	}
	return ts
}
