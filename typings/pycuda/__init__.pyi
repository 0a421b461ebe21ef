# Local stubs for the few pycuda calls edge/ uses (pycuda ships no type information).
