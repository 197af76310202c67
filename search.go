package journal

import (
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"
)

// Search limits, checked by ParseFilter.
const (
	MaxQueryWords = 10  // words in q
	MaxQueryBytes = 200 // bytes of q
)

// maxWordBytes is the longest word stored as it is; a longer one is stored as
// a prefix and a hash of the whole word (see IndexWord).
const maxWordBytes = 64

// Filter narrows a list of entries. The zero value selects every entry.
type Filter struct {
	// Words are the index forms (IndexWord) of the words every selected
	// entry contains in its title or body, sorted and without duplicates.
	// Empty: no word condition.
	Words []string
	// From and To bound created_at: From <= created_at < To. Nil: no bound.
	// They are multiples of TimeResolution, in UTC.
	From, To *time.Time
}

// IsZero reports whether f selects every entry.
func (f Filter) IsZero() bool { return len(f.Words) == 0 && f.From == nil && f.To == nil }

// Equal reports whether f and g select the same entries by construction.
func (f Filter) Equal(g Filter) bool {
	return slices.Equal(f.Words, g.Words) && timePtrEqual(f.From, g.From) && timePtrEqual(f.To, g.To)
}

func timePtrEqual(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// Words returns the words of text, in order, each folded (see FoldWord): the
// maximal runs of Unicode letters and digits. Everything else separates
// words.
func Words(text string) []string {
	var out []string
	start := -1
	for i, r := range text {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			out = append(out, FoldWord(text[start:i]))
			start = -1
		}
	}
	if start >= 0 {
		out = append(out, FoldWord(text[start:]))
	}
	return out
}

// FoldWord returns the case-folded form of a word: each rune is replaced by
// one fixed member of its simple case-folding orbit (the smallest lower-case
// one, else the smallest), so two words fold alike exactly when
// strings.EqualFold says they are equal. w is valid UTF-8 (as Words
// returns it).
func FoldWord(w string) string {
	ascii := true
	for i := 0; i < len(w); i++ {
		if w[i] >= utf8.RuneSelf || w[i] == 'K' || w[i] == 'k' || w[i] == 'S' || w[i] == 's' {
			// k and s share an orbit with the Kelvin sign and the long s;
			// the loop below treats them like any other rune.
			ascii = false
			break
		}
	}
	if ascii {
		b := []byte(w)
		for i, c := range b {
			if 'A' <= c && c <= 'Z' {
				b[i] = c + 'a' - 'A'
			}
		}
		return string(b)
	}
	out := make([]rune, 0, len(w))
	for _, r := range w {
		out = append(out, foldRune(r))
	}
	return string(out)
}

// foldRune returns the smallest lower-case member of r's simple case-folding
// orbit, or the smallest member when none is lower-case.
func foldRune(r rune) rune {
	best, bestLower := r, unicode.IsLower(r)
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		lower := unicode.IsLower(f)
		if lower && !bestLower || lower == bestLower && f < best {
			best, bestLower = f, lower
		}
	}
	return best
}

// IndexWord returns the form in which a folded word is stored in the word
// index and compared: the word itself when it has at most 64 bytes, else its
// first 32 bytes (cut at a rune boundary), '~' and a SHA-256 of the whole
// word, so any word can be found and stored keys stay short. '~' is not a
// letter or digit, so a long word's form never equals a short word.
func IndexWord(folded string) string {
	if len(folded) <= maxWordBytes {
		return folded
	}
	cut := 32
	for cut > 0 && !utf8.RuneStart(folded[cut]) {
		cut--
	}
	sum := sha256.Sum256([]byte(folded))
	return folded[:cut] + "~" + base64.RawURLEncoding.EncodeToString(sum[:16])
}

// IndexWords returns the distinct index forms of the words of texts, sorted:
// what the word index holds for an entry with that title and body.
func IndexWords(texts ...string) []string {
	var out []string
	for _, t := range texts {
		for _, w := range Words(t) {
			out = append(out, IndexWord(w))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ParseFilter parses the q, from and to query parameters ("" means absent).
// q must hold 1-10 words in at most 200 bytes of valid UTF-8; from and to are
// RFC 3339 instants with from before to. Errors are *ValidationError naming
// every bad parameter.
func ParseFilter(q, from, to string) (Filter, error) {
	var f Filter
	var v ValidationError
	if q != "" {
		words := Words(q)
		switch {
		case !utf8.ValidString(q):
			v.add("q", "must be valid UTF-8")
		case len(q) > MaxQueryBytes:
			v.add("q", "must be at most %d bytes", MaxQueryBytes)
		case len(words) == 0 || len(words) > MaxQueryWords:
			v.add("q", "must contain 1-%d words (runs of letters and digits)", MaxQueryWords)
		default:
			for _, w := range words {
				f.Words = append(f.Words, IndexWord(w))
			}
			slices.Sort(f.Words)
			f.Words = slices.Compact(f.Words)
		}
	}
	for _, p := range []struct {
		name, value string
		dst         **time.Time
	}{{"from", from, &f.From}, {"to", to, &f.To}} {
		if p.value == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, p.value)
		if err != nil {
			v.add(p.name, "must be an RFC 3339 time such as 2025-01-02T03:04:05Z")
			continue
		}
		t = ceilTime(t)
		*p.dst = &t
	}
	if f.From != nil && f.To != nil && !f.From.Before(*f.To) {
		v.add("to", "must be later than from")
	}
	if err := v.err(); err != nil {
		return Filter{}, err
	}
	return f, nil
}

// ceilTime returns t in UTC rounded up to TimeResolution. Stored times are
// multiples of it, so for every stored c, c >= t exactly when c >=
// ceilTime(t), and likewise for <.
func ceilTime(t time.Time) time.Time {
	t = t.UTC()
	if tr := t.Truncate(TimeResolution); !tr.Equal(t) {
		return tr.Add(TimeResolution)
	}
	return t
}
