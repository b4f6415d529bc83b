package enrich

import "testing"

// BenchmarkClassify classifies the texts of the sisimai corpus (and the
// labelled corpus, when present) round-robin: a realistic mix of short
// provider replies and long DSN bodies. Run on one core:
//
//	go test -run '^$' -bench Classify -benchmem -cpu 1 ./enrich/
func BenchmarkClassify(b *testing.B) {
	c := MustNew()
	var inputs []Input
	for _, row := range readTSV(b, "testdata/sisimai/corpus.tsv") {
		inputs = append(inputs, Input{Reason: row["diagnostic_text"], Email: "x@" + row["destination_domain"]})
	}
	for _, row := range readTSVIfPresent(b, "testdata/corpus.tsv") {
		inputs = append(inputs, Input{Event: row["event"], Type: row["type"], Reason: row["text"], Status: row["status"], Email: row["email"]})
	}
	bytes := 0
	for _, in := range inputs {
		bytes += len(in.Reason)
	}
	b.SetBytes(int64(bytes / len(inputs)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Classify(inputs[i%len(inputs)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "classifications/s")
}

// BenchmarkClassifyShort is the common case: one short provider reply.
func BenchmarkClassifyShort(b *testing.B) {
	c := MustNew()
	in := Input{Email: "kim@gmail.com", Reason: "550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. - gsmtp"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Classify(in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "classifications/s")
}

// BenchmarkClassifyNonASCII is a short reply holding non-ASCII text (a
// Google Groups rejection in Japanese): it pays for the second automaton
// that ASCII texts never run.
func BenchmarkClassifyNonASCII(b *testing.B) {
	c := MustNew()
	in := Input{Email: "group@googlegroups.com", Reason: "連絡しようとしたグループ（libsisimai）が存在しないか、グループにメッセージを投稿する権限がない可能性があります。"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Classify(in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "classifications/s")
}
