// Exits with code 1 at once: a crash loop for the restart policy tests.
process.exit(1);
