// Package enrich classifies bounces and names mailbox providers: what the
// sink and webhook groups add to an event besides what the producer sent.
//
// A Classifier reads the SMTP reply code, the enhanced status code (RFC
// 3463) and the diagnostic text of a bounce or deferral and returns a
// Result: BounceType hard or soft, one of SendGrid's seven
// Classifications, a finer Reason from the project's taxonomy (codes.go),
// the rule that decided and, when the text or address names one, the
// provider. The rules are data: the embedded rules.txt, tried after any
// operator rules given to New; the first rule whose conditions all hold
// decides (docs/classification.md explains the format).
//
// # Contract
//
//   - Total: every bounce, block or deferral gets a Result; a text no rule
//     matches is Unclassified (soft), never an error. Only an event that is
//     neither a bounce nor a deferral is refused (ErrNotBounce).
//   - Hard means the address is invalid (no such user or domain, moved,
//     null MX); reputation, content, rate and policy blocks are soft. A
//     deferral is always soft.
//   - Deterministic and pure: the same Input gives the same Result; no I/O,
//     no clock. A Classifier is safe for concurrent use and looks at most
//     MaxTextBytes of a text, so a hostile reason costs little.
//   - ProviderForDomain maps a recipient domain to its mailbox provider
//     ("" when unknown) from an embedded table.
package enrich
