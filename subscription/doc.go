// Package subscription is bouncer's webhook subscriptions: one Webhook type
// (what the API shows and changes, and what delivery signs with), its
// stored form Sealed, and the rules around them.
//
// # Contract
//
//   - Secrets are never stored in the clear: Sealer seals the Standard
//     Webhooks secrets and the SendGrid signing key with the keyring of
//     BOUNCER_SECRET_KEY (package internal/secrets), each bound to its
//     account, subscription id and purpose, so a sealed value copied into
//     another row does not open.
//   - Versions order the writes of one subscription and the highest wins:
//     a write made from a row of version v gets NextVersion(v, now), above
//     v whatever the clock, so a change never loses to the row it was made
//     from; Reseal writes v+1, so it loses to any change made meanwhile.
//   - Service (the API's view) is scoped by account: every method takes the
//     account first and reads or writes only its subscriptions.
//   - Registry (delivery's view) reads every account's subscriptions in one
//     read; a subscription whose secrets do not open is handed to delivery
//     inactive, with a reason, never with missing secrets. DisableEndpoint
//     disables once: the first time and reason stay.
//   - The delivery log (Delivery, DeliveryState) and failed batches
//     (FailedBatch, Replay) are the types delivery writes and the API
//     reads; Store is what a database must provide (sinks/clickhouse does).
package subscription
