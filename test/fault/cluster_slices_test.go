//go:build fault

package fault

import "testing"

// slicesMove is TestSlicesMoveWithWorkers's stream on the cluster (50,000
// events at 500 a second, so worker b is added, worker a drops the slices
// it gave away 30 s later and is removed while the stream runs): the
// slices move with the partitions, every event is stored once on the
// shards and both replicas of each agree, and the derived drops read
// through the Distributed table are exactly those of the reference run.
func (ci *clusterInstance) slicesMove(t *testing.T) {
	r := newClusterRun(t, ci, "slices")
	c := r.conn()
	slicesMove(t, r.run, c, slicesStream{events: clusterEvents, rate: 500, step: 5000}, func() { r.check(c) })
}
