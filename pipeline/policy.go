package pipeline

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

// SoftBouncePolicy says when repeated soft bounces put a recipient on the
// bounce list. Blocks, rate limits, reputation, content and authentication
// failures never do: the recipient is fine, the sender is not.
type SoftBouncePolicy struct {
	// DisabledHits soft bounces saying the mailbox is disabled (or a 4xx
	// user unknown), the first and last at least DisabledSpan apart, with no
	// delivery in between, suppress. Defaults 2 and 24h.
	DisabledHits int
	DisabledSpan time.Duration
	// A mailbox full for FullFor (since its first full bounce, with no
	// delivery since) suppresses. Default 30 days.
	FullFor time.Duration
}

// Validate fills defaults and reports a bad field.
func (p *SoftBouncePolicy) Validate() error {
	if p.DisabledHits == 0 {
		p.DisabledHits = 2
	}
	if p.DisabledSpan == 0 {
		p.DisabledSpan = 24 * time.Hour
	}
	if p.FullFor == 0 {
		p.FullFor = 30 * 24 * time.Hour
	}
	if p.DisabledHits < 1 || p.DisabledSpan < 0 || p.FullFor < 0 {
		return fmt.Errorf("soft-bounce policy %+v: want hits >= 1 and non-negative spans", *p)
	}
	return nil
}

// HistoryEvent is a past bounce or delivery of a recipient.
type HistoryEvent struct {
	AccountID  string
	EmailNorm  string
	Event      string // bounce, deferred or delivered
	ReasonCode string
	BounceType string
	Timestamp  int64
}

// History keeps recipients' deliveries and escalating soft bounces.
type History interface {
	// RecipientHistory returns the events of the given (normalised)
	// recipients of one account since a time.
	RecipientHistory(ctx context.Context, account string, emails []string, since time.Time) ([]HistoryEvent, error)
	// WriteHistory records events. A repeat (a retried batch) is harmless.
	WriteHistory(ctx context.Context, events []HistoryEvent) error
}

// historyOf picks the events of rows the policy will need later:
// deliveries and soft bounces that can escalate.
func historyOf(dst []HistoryEvent, rows []Row) []HistoryEvent {
	for i := range rows {
		r := &rows[i]
		if r.Derived {
			continue
		}
		e := HistoryEvent{AccountID: r.AccountID, EmailNorm: r.EmailNorm, Event: string(r.Event.Event), Timestamp: r.Timestamp}
		if r.Bounce != nil {
			e.ReasonCode, e.BounceType = string(r.Bounce.Reason), string(r.Bounce.BounceType)
		}
		if softKind(e.Event, e.ReasonCode, e.BounceType) != "" {
			dst = append(dst, e)
		}
	}
	return dst
}

// softKind classifies an event for the policy: "disabled", "full",
// "delivered" or "" (does not count).
func softKind(event, reason, bounceType string) string {
	switch {
	case event == string(schemas.EventDelivered):
		return "delivered"
	case event != string(schemas.EventBounce) || bounceType != string(enrich.Soft):
		return ""
	case reason == "mailbox_disabled" || reason == "user_unknown":
		return "disabled"
	case reason == "mailbox_full":
		return "full"
	}
	return ""
}

// escalations applies the policy to the soft bounces among rows, with the
// recipients' history, and returns the bounce-list additions it implies.
func (h *Handler) escalations(ctx context.Context, rows []Row) ([]suppression.Change, error) {
	p := h.cfg.SoftBounces
	type recipient struct{ account, email string }
	candidates := map[recipient]bool{}
	var oldest int64
	for i := range rows {
		r := &rows[i]
		if r.Bounce == nil || r.Derived {
			continue
		}
		if k := softKind(string(r.Event.Event), string(r.Bounce.Reason), string(r.Bounce.BounceType)); k == "disabled" || k == "full" {
			candidates[recipient{r.AccountID, r.EmailNorm}] = true
			if oldest == 0 || r.Timestamp < oldest {
				oldest = r.Timestamp
			}
		}
	}
	if len(candidates) == 0 {
		return nil, nil
	}
	since := time.Unix(oldest, 0).Add(-max(p.FullFor, p.DisabledSpan) - 24*time.Hour)
	byAccount := map[string][]string{}
	for c := range candidates {
		byAccount[c.account] = append(byAccount[c.account], c.email)
	}
	timeline := map[recipient][]HistoryEvent{}
	for account, emails := range byAccount {
		sort.Strings(emails)
		past, err := h.cfg.History.RecipientHistory(ctx, account, emails, since)
		if err != nil {
			return nil, fmt.Errorf("read bounce history: %w", err)
		}
		for _, e := range past {
			k := recipient{account, e.EmailNorm}
			timeline[k] = append(timeline[k], e)
		}
	}
	// This batch's events come after what the table holds.
	for i := range rows {
		r := &rows[i]
		k := recipient{r.AccountID, r.EmailNorm}
		if !candidates[k] || r.Derived {
			continue
		}
		e := HistoryEvent{EmailNorm: r.EmailNorm, Event: string(r.Event.Event), Timestamp: r.Timestamp}
		if r.Bounce != nil {
			e.ReasonCode, e.BounceType = string(r.Bounce.Reason), string(r.Bounce.BounceType)
		}
		timeline[k] = append(timeline[k], e)
	}
	var out []suppression.Change
	keys := make([]recipient, 0, len(timeline))
	for k := range timeline {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].account+keys[i].email < keys[j].account+keys[j].email })
	for _, k := range keys {
		events := timeline[k]
		sort.SliceStable(events, func(i, j int) bool { return events[i].Timestamp < events[j].Timestamp })
		if at, why, ok := p.decide(events); ok {
			out = append(out, suppression.Change{
				AccountID: k.account, List: suppression.ListBounces, EmailNorm: k.email, Email: k.email,
				At: time.Unix(at, 0).UTC(), ReasonCode: why, Classification: string(enrich.MailboxUnavailable),
				Reason: "suppressed by the soft-bounce policy: " + p.describe(why), Source: "policy:" + why,
				Src: trigger(rows, k.account, k.email, at),
			})
		}
	}
	return out, nil
}

// trigger is the position of the bounce among rows at which the policy
// suppressed a recipient (at): the first of the recipient's rows at that
// time, else its first row in the batch.
func trigger(rows []Row, account, email string, at int64) suppression.Position {
	first := -1
	for i := range rows {
		r := &rows[i]
		if r.Derived || r.AccountID != account || r.EmailNorm != email {
			continue
		}
		if r.Timestamp == at {
			return rowPosition(r)
		}
		if first < 0 {
			first = i
		}
	}
	if first < 0 {
		return suppression.Position{}
	}
	return rowPosition(&rows[first])
}

// decide walks one recipient's events in time order and reports the first
// moment the policy suppresses it.
func (p SoftBouncePolicy) decide(events []HistoryEvent) (at int64, why string, ok bool) {
	var disabled []int64
	fullSince := int64(-1) // -1: not full since the last delivery
	for _, e := range events {
		switch softKind(e.Event, e.ReasonCode, e.BounceType) {
		case "delivered":
			disabled, fullSince = disabled[:0], -1
		case "disabled":
			disabled = append(disabled, e.Timestamp)
			if len(disabled) >= p.DisabledHits && time.Duration(e.Timestamp-disabled[0])*time.Second >= p.DisabledSpan {
				return e.Timestamp, "mailbox_disabled", true
			}
		case "full":
			if fullSince < 0 {
				fullSince = e.Timestamp
			}
			if time.Duration(e.Timestamp-fullSince)*time.Second >= p.FullFor && e.Timestamp > fullSince {
				return e.Timestamp, "mailbox_full", true
			}
		}
	}
	return 0, "", false
}

func (p SoftBouncePolicy) describe(why string) string {
	if why == "mailbox_full" {
		return fmt.Sprintf("mailbox full for %s with no delivery", p.FullFor)
	}
	return fmt.Sprintf("%d disabled-mailbox bounces at least %s apart with no delivery between", p.DisabledHits, p.DisabledSpan)
}
