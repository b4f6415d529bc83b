// Package suppression is bouncer's suppression lists: the list changes
// (Change, ordered by Version), the current entries (Entry), the in-memory
// Index workers and the API's batch check answer from, and the Service
// through which everything outside the sink group changes a list.
//
// # Contract
//
//   - Order is by event time, not by arrival: a change's Version is its
//     event time (unix seconds) times two, plus one for a removal, and the
//     highest version of an entry wins in the store, on the change log and
//     in every Index. So duplicates and reordering from at-least-once
//     writers give the same lists: an API delete at T removes the entry, a
//     bounce from after T adds it again, one from before T does not.
//   - Write-then-publish: Service.Write (and so every API change, import
//     and delete-all) stores the changes first and only then announces them
//     on the change log; a failure is repaired by writing again. The sink
//     group (package pipeline) writes through the same Service.
//   - Erasure announces first, then deletes, then records (EraseWith): a
//     failure never leaves an index suppressing an address the store no
//     longer holds; the record keeps only the address's SHA-256.
//   - The Index is a function of the set of changes applied, not of their
//     order. Addresses are compared in their normalised form
//     (schemas.NormalizeAddress). Safe for concurrent use.
//   - DropReason is the derived-drop rule's input: a processed event to an
//     address on bounces, spam reports, unsubscribes (global or the
//     message's group) or invalid emails is dropped with SendGrid's reason;
//     blocks never drop, and only memberships that began at or before the
//     message count. DropReasonAt decides as of an event's position: the
//     changes of that event and of later events in its partition (Change.Src)
//     are not seen, so a decision never depends on how far the index got.
package suppression
