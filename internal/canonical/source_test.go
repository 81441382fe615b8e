package canonical

import "testing"

// TestSourceField: every field of SourceHeaders is found under any
// spelling of its name and with any value; its companions (conditions,
// ranges, the source's own authorization), which name no object, and
// other fields are not.
func TestSourceField(t *testing.T) {
	tests := []struct {
		key, value string
		want       string
	}{
		{"X-Amz-Copy-Source", "/payroll/salaries.csv", "X-Amz-Copy-Source"},
		{"x-amz-copy-source", "payroll/salaries.csv?versionId=3", "X-Amz-Copy-Source"},
		{"X-AMZ-COPY-SOURCE", "", "X-Amz-Copy-Source"},
		{"X-Amz-Rename-Source", "/reports/old", "X-Amz-Rename-Source"},
		{"x-goog-copy-source", "payroll/salaries.csv", "X-Goog-Copy-Source"},
		{"X-Ms-Copy-Source", "https://acct.blob.core.windows.net/payroll/salaries.csv", "X-Ms-Copy-Source"},
		{"x-ms-rename-source", "/payroll/salaries.csv", "X-Ms-Rename-Source"},
		{"X-MS-FILE-RENAME-SOURCE", "payroll.csv", "X-Ms-File-Rename-Source"},
		{"X-Amz-Copy-Source-Range", "bytes=0-9", ""},
		{"X-Amz-Copy-Source-If-Match", "etag", ""},
		{"X-Ms-Copy-Source-Authorization", "Bearer x", ""},
		{"X-Goog-Copy-Source-Generation", "1", ""},
		{"X-Amz-Copy-Sourcex", "/a/b", ""},
		{"Copy-Source", "/a/b", ""},
	}
	for _, tt := range tests {
		h := map[string][]string{"Accept": {"*/*"}, tt.key: {tt.value}}
		got, ok := SourceField(h)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("%s: %q: SourceField = %q, %v; want %q", tt.key, tt.value, got, ok, tt.want)
		}
	}
	if got, ok := SourceField(nil); ok || got != "" {
		t.Errorf("no header: SourceField = %q, %v", got, ok)
	}
}
