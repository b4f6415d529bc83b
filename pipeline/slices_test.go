package pipeline

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/eventgen"
	"github.com/bouncer-mail/bouncer/suppression"
)

// fakeSlices is a SliceHolder over one index that fails the test when a
// recipient is applied or decided for while no owner holds its slice, and
// counts what each owner holds.
type fakeSlices struct {
	t      *testing.T
	n      int
	ix     *suppression.Index
	owners map[any]map[int]bool
}

func (f *fakeSlices) PartitionOf(account, email string) int {
	return consumer.PartitionOf(account, email, f.n)
}
func (f *fakeSlices) Partitions() int { return f.n }

func (f *fakeSlices) Hold(_ context.Context, owner any, parts []int) error {
	if f.owners[owner] == nil {
		f.owners[owner] = map[int]bool{}
	}
	for _, p := range parts {
		f.owners[owner][p] = true
	}
	return nil
}

func (f *fakeSlices) Release(owner any) { delete(f.owners, owner) }

func (f *fakeSlices) held(account, email string) bool {
	p := f.PartitionOf(account, email)
	for _, ps := range f.owners {
		if ps[p] {
			return true
		}
	}
	return false
}

func (f *fakeSlices) Apply(c suppression.Change) {
	if !f.held(c.AccountID, c.EmailNorm) {
		f.t.Errorf("applied a change of %s/%s whose slice is not held", c.AccountID, c.EmailNorm)
	}
	f.ix.Apply(c)
}

func (f *fakeSlices) DropReasonAt(account, email string, group int64, at int64, asOf suppression.Position) string {
	if !f.held(account, email) {
		f.t.Errorf("decided for %s/%s whose slice is not held", account, email)
	}
	return f.ix.DropReasonAt(account, email, group, at, asOf)
}

// With a SliceHolder the sink handler holds its partition's slice on
// assignment and, before applying or deciding, the slices of each batch's
// recipients (events a producer put in another partition too), lets them
// go on revocation, and derives the drops a full index derives.
func TestHandlerHoldsTheSlicesItDecidesFor(t *testing.T) {
	g := eventgen.New(13)
	g.Recipients = 60
	g.Accounts = []string{"acme", "globex"}
	var msgs []consumer.Message
	for i := range 1500 {
		v, _ := g.Next(nil)
		msgs = append(msgs, consumer.Message{Topic: "t", Partition: 1, Offset: int64(i), Value: v, Time: time.Unix(1764201600+int64(i), 0)})
	}
	drops := func(lists Suppressions, batch int) []string {
		sink := newFakeSink(7, 0)
		var got []Row
		h, err := NewHandler(Config{Sink: storedRows{sink, &got}, Publisher: &fakePublisher{sink: sink, seen: map[string]bool{}},
			Classifier: enrich.MustNew(), Suppressions: lists, Changes: &fakeChanges{}, MaxFutureSkew: -1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Assigned(context.Background(), "t", 1); err != nil {
			t.Fatal(err)
		}
		if fs, ok := lists.(*fakeSlices); ok && !fs.owners[SliceOwner{h, "t", 1}][1] {
			t.Fatalf("after Assigned of partition 1 the handler holds %v", fs.owners)
		}
		for start := 0; start < len(msgs); start += batch {
			if err := h.Handle(context.Background(), "t", 1, msgs[start:min(start+batch, len(msgs))]); err != nil {
				t.Fatal(err)
			}
		}
		if fs, ok := lists.(*fakeSlices); ok {
			if held := len(fs.owners[SliceOwner{h, "t", 1}]); held != fs.n {
				t.Errorf("the stream's recipients are in all %d slices; the handler holds %d", fs.n, held)
			}
			h.Revoked("t", 1)
			if len(fs.owners) != 0 {
				t.Errorf("after Revoked the handler still holds %v", fs.owners)
			}
		}
		var ids []string
		for _, row := range got {
			if row.Derived {
				ids = append(ids, row.SGEventID+" "+row.Reason)
			}
		}
		slices.Sort(ids)
		return ids
	}
	want := drops(suppression.New(), len(msgs))
	if len(want) < 10 {
		t.Fatalf("only %d derived drops; the stream should give more", len(want))
	}
	got := drops(&fakeSlices{t: t, n: 4, ix: suppression.New(), owners: map[any]map[int]bool{}}, 50)
	if !slices.Equal(got, want) {
		t.Errorf("with slices: %d derived drops, want the full index's %d; first differences: %v", len(got), len(want), diff(got, want, 5))
	}
}
