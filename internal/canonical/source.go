package canonical

import "strings"

// SourceHeaders are the header fields, in canonical form, with which
// storage APIs name a second object that the request reads or moves,
// beside the one in its path: S3's X-Amz-Copy-Source (CopyObject,
// UploadPartCopy) and X-Amz-Rename-Source (RenameObject), Google Cloud
// Storage's X-Goog-Copy-Source (the XML API's copy), and Azure Storage's
// X-Ms-Copy-Source (Copy Blob, the *From URL operations, Copy File),
// X-Ms-Rename-Source (a Data Lake rename) and X-Ms-File-Rename-Source (a
// Files rename). The service authorizes the source with the credential
// the request carries, so a rule's paths, which judged only the path,
// do not bound what such a request reads. SourceField finds them.
var SourceHeaders = []string{
	"X-Amz-Copy-Source", "X-Amz-Rename-Source",
	"X-Goog-Copy-Source",
	"X-Ms-Copy-Source", "X-Ms-Rename-Source", "X-Ms-File-Rename-Source",
}

// SourceField returns the first of SourceHeaders that h holds, under any
// spelling of its name (h's keys need not be canonical), and whether
// there is one. The service reads such a field whatever its value (an
// empty one included, which it refuses itself), so its presence is what
// counts. It allocates nothing.
func SourceField(h map[string][]string) (string, bool) {
	for _, name := range SourceHeaders {
		if _, ok := h[name]; ok {
			return name, true
		}
	}
	for k := range h {
		for _, name := range SourceHeaders {
			if len(k) == len(name) && strings.EqualFold(k, name) {
				return name, true
			}
		}
	}
	return "", false
}
