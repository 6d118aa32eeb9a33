package fuzzcorpus

import "testing"

func TestMarshal(t *testing.T) {
	b, err := Marshal([]byte("a\x00\xff"), "é\n", true, 7, int64(-1), uint16(2), uint32(3), uint64(1<<40))
	if err != nil {
		t.Fatal(err)
	}
	want := "go test fuzz v1\n" +
		"[]byte(\"a\\x00\\xff\")\n" +
		"string(\"é\\n\")\n" +
		"bool(true)\n" +
		"int(7)\n" +
		"int64(-1)\n" +
		"uint16(2)\n" +
		"uint32(3)\n" +
		"uint64(1099511627776)\n"
	if string(b) != want {
		t.Fatalf("got\n%s\nwant\n%s", b, want)
	}
	if _, err := Marshal(uint8(1)); err == nil {
		t.Fatal("uint8 (written as byte('x') by the go command) accepted")
	}
	if _, err := Marshal(); err == nil {
		t.Fatal("no arguments accepted")
	}
}
