import { createContext, useContext } from 'react';
import type { StoredAuth } from './auth';

export interface AuthContextValue {
  auth: StoredAuth;
  logout: () => void;
}

export const AuthContext = createContext<AuthContextValue | null>(null);

export function useAuth(): AuthContextValue {
  const value = useContext(AuthContext);
  if (!value) throw new Error('useAuth outside of a signed-in page');
  return value;
}
