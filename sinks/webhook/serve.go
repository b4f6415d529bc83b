package webhook

import (
	"context"
	"errors"
	"sync"
)

// Serve runs the dispatcher and its delivery log writer for as long as the
// groups that feed it run (the event group and the retry tiers: each feed
// runs on ctx), and returns their joined errors once every feed returned and
// the dispatcher and log writer stopped. The dispatcher and the log writer
// outlive the feeds: batches a feed handed over before it stopped are
// delivered or parked, and their log rows written, before Serve returns.
// Close the Parker after Serve returns.
func (d *Dispatcher) Serve(ctx context.Context, logw *LogWriter, feeds ...func(context.Context) error) error {
	dctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.Run(dctx) }()
	if logw != nil {
		wg.Add(1)
		go func() { defer wg.Done(); logw.Run(dctx) }()
	}
	errs := make(chan error, len(feeds))
	for _, feed := range feeds {
		go func() { errs <- feed(ctx) }()
	}
	var all []error
	for range feeds {
		all = append(all, <-errs)
	}
	stop()
	wg.Wait()
	return errors.Join(all...)
}
