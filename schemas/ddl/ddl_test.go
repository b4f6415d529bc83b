package ddl

import "testing"

// TestMigrations: the embedded files read as migrations, numbered once
// each from 1 without gaps (two branches that each add the next number
// land as two migrations with one number, which Migrations refuses).
func TestMigrations(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		if m.Version != i+1 || len(m.Statements) == 0 {
			t.Errorf("migration %d is %04d_%s with %d statements, want version %d with at least one", i+1, m.Version, m.Name, len(m.Statements), i+1)
		}
	}
}
