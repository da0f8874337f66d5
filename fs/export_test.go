package fs

// FoldersAnswered is how many folder nodes the mount has made for the
// kernel so far (every mount of the process together).
func FoldersAnswered() int64 { return foldersAnswered.Load() }
