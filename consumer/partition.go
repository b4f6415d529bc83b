package consumer

import (
	"strings"

	"github.com/segmentio/kafka-go"
)

// PartitionOf is bouncer's partition of a recipient: murmur2 (the Java
// client's default, as kafka.Murmur2Balancer computes it) of
// account + "\x00" + normalised address, modulo partitions. The change log
// is partitioned with it, so the list changes of an (account, recipient)
// are in one partition whose number a worker can compute; an event topic
// partitioned the same way, with the same count, puts an (account,
// recipient)'s events and list changes in partitions of the same number
// (docs/scaling.md).
func PartitionOf(account, emailNorm string, partitions int) int {
	return partitioner.Balance(kafka.Message{Key: recipientKey(account, emailNorm)}, seq(partitions)...)
}

var partitioner = &kafka.Murmur2Balancer{}

func recipientKey(account, emailNorm string) []byte {
	k := make([]byte, 0, len(account)+1+len(emailNorm))
	k = append(k, account...)
	k = append(k, 0)
	return append(k, emailNorm...)
}

// seqs[n] is 0..n-1, the partitions the balancer picks from (n up to 256
// cached; more are made per call).
var seqs = func() [][]int {
	out := make([][]int, 257)
	for n := range out {
		out[n] = makeSeq(n)
	}
	return out
}()

func seq(n int) []int {
	if n < len(seqs) {
		return seqs[n]
	}
	return makeSeq(n)
}

func makeSeq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// changeBalancer puts a change-log message in its recipient's partition
// (PartitionOf), reading account and address from its key
// (account/list/group/address; an account id has no '/').
type changeBalancer struct{}

func (changeBalancer) Balance(msg kafka.Message, partitions ...int) int {
	account, rest, _ := strings.Cut(string(msg.Key), "/")
	_, rest, _ = strings.Cut(rest, "/")   // list
	_, email, _ := strings.Cut(rest, "/") // group
	return partitions[PartitionOf(account, email, len(partitions))]
}
