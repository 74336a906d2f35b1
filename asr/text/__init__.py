"""Stage 4, everything that happens to a file's text after recognition, per file: assembly,
punctuation, sentences, number normalisation, speakers, and the exported formats. Nothing here
sees batch mates, so batching can never move a file's text, speakers or numbers."""
