package transform

// CheckPlaceholder reports why ph cannot be a placeholder, or nil: it must
// be 8 to 256 bytes of letters, digits, '-', '.', '_' and '~', characters
// no URL, form or JSON encoding rewrites, so that it is found literally in
// every position. The policy checks placeholders with it when it loads.
func CheckPlaceholder(ph string) error { return checkPlaceholder(ph) }
