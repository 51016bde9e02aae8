// ESLint (flat config): JavaScript's and typescript-eslint's recommended rules with type
// information, and the React hooks rules (rules-of-hooks, exhaustive-deps, React 19's compiler
// checks). Type errors themselves are tsc's job (`npm run typecheck`).
import js from '@eslint/js';
import reactHooks from 'eslint-plugin-react-hooks';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist', 'node_modules'] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  reactHooks.configs.flat.recommended,
  {
    languageOptions: {
      globals: globals.browser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
  },
  {
    // The configs themselves are plain JavaScript outside the TypeScript project.
    files: ['eslint.config.js'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: globals.node },
  },
);
