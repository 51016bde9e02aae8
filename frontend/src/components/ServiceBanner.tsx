import { useHubReachable } from '../connectivity';
import { useI18n } from '../i18n';

/** Shown while the hub does not answer; it disappears by itself once any request succeeds again. */
export function ServiceBanner() {
  const reachable = useHubReachable();
  const { t } = useI18n();
  if (reachable) return null;
  return (
    <div className="banner" role="alert" data-testid="service-banner">
      <strong>{t('banner.unavailable')}</strong> <span>{t('banner.retrying')}</span>
    </div>
  );
}
