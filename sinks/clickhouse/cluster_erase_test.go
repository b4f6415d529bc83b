package clickhouse

import "testing"

// On a cluster the erase mutations go to the local tables ON CLUSTER:
// ClickHouse refuses ALTER TABLE ... DELETE on a Distributed table.
func TestMutationSQL(t *testing.T) {
	single := &Store{cfg: Config{Database: "bcl"}}
	cluster := &Store{cfg: Config{Database: "bcl", Cluster: "bouncer"}, cluster: &clusterState{}}
	for _, tc := range []struct {
		name  string
		s     *Store
		q     Query
		table string
		want  string
	}{
		{"one server: unchanged", single, qEraseEvents, "events", qEraseEvents.SQL},
		{"cluster: events", cluster, qEraseEvents, "events",
			"ALTER TABLE `bcl`.`events_local` ON CLUSTER `bouncer` DELETE WHERE account_id = ? AND " + hashMatch},
		{"cluster: dead letters", cluster, qEraseDeadLetters, "dead_letters",
			"ALTER TABLE `bcl`.`dead_letters_local` ON CLUSTER `bouncer` DELETE WHERE has(splitByChar(',', ?), toString(cityHash64(kafka_topic, kafka_partition, kafka_offset, msg_index)))"},
		{"cluster: quoted name of an optional table", cluster,
			Query{SQL: "ALTER TABLE `webhook_deliveries` DELETE WHERE 1"}, "webhook_deliveries",
			"ALTER TABLE `bcl`.`webhook_deliveries_local` ON CLUSTER `bouncer` DELETE WHERE 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.mutationSQL(tc.q, tc.table); got != tc.want {
				t.Errorf("mutationSQL =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
