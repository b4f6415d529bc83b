// Package analytics holds the types of bouncer's delivery analytics and the
// rules that shape them, independent of where they are stored (package
// sinks/clickhouse reads them) or how they are served (package api, the
// dashboard, bouncer stats):
//
//   - stats: StatCounts (the base counts of one period and key, each
//     sg_event_id counted once), StatsQuery and StatsRow, and BuildStats,
//     which turns rows into SendGrid's /v3/stats response (every period of
//     the range, zeros where there were no events, SendGrid's metrics);
//   - email activity: ActivityFilter, the parsed form of SendGrid's query
//     language (ParseActivityQuery; values only ever become bound arguments
//     of a store's query), ActivityMessage, ActivityEvent, and
//     BuildActivityMessage, SendGrid's message view;
//   - the dashboard's counts: DayCount, ReasonCount, DomainCounts.
//
// # Contract
//
// Everything here is pure: no I/O, no clock (callers pass times), safe for
// concurrent use. Periods are UTC; a week starts on Monday. SendGrid's
// processed excludes the processed events bouncer derived a drop for, and
// requests = processed + drops. A malformed activity query is a
// *QueryError whose message says what to fix.
package analytics
