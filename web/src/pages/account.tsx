// The account page: profile (name, phone, language) from user-service and notification
// preferences per channel from notification-service.

import { useEffect, useState, type FormEvent } from 'react';
import { api, type Preferences, type User } from '../lib/api';
import { LANGS, type Lang } from '../lib/i18n';
import { ErrorMessage, Field, Loading, useLoad } from '../components';
import { useI18n } from '../state';

export function AccountPage() {
  const { t, setLang } = useI18n();
  const me = useLoad(() => api.me(), []);
  const prefs = useLoad(() => api.preferences(), []);
  const [profile, setProfile] = useState<Pick<User, 'name' | 'phone' | 'locale'> | null>(null);
  const [profileState, setProfileState] = useState<{ error?: unknown; saved?: boolean }>({});
  const [channels, setChannels] = useState<Preferences | null>(null);
  const [prefsState, setPrefsState] = useState<{ error?: unknown; saved?: boolean }>({});
  useEffect(() => {
    if (me.data) setProfile({ name: me.data.name, phone: me.data.phone, locale: me.data.locale });
  }, [me.data]);
  useEffect(() => {
    if (prefs.data) setChannels({ email: prefs.data.email, sms: prefs.data.sms });
  }, [prefs.data]);

  const saveProfile = async (event: FormEvent) => {
    event.preventDefault();
    if (!profile) return;
    setProfileState({});
    try {
      const saved = await api.updateMe({ name: profile.name, phone: profile.phone?.trim() ? profile.phone.trim() : null, locale: profile.locale });
      me.set(saved);
      if (saved.locale === 'en' || saved.locale === 'zh-CN') setLang(saved.locale as Lang);
      setProfileState({ saved: true });
    } catch (error) {
      setProfileState({ error });
    }
  };
  const savePrefs = async (event: FormEvent) => {
    event.preventDefault();
    if (!channels) return;
    setPrefsState({});
    try {
      setChannels(await api.savePreferences(channels));
      setPrefsState({ saved: true });
    } catch (error) {
      setPrefsState({ error });
    }
  };

  if (me.error) return <ErrorMessage error={me.error} onRetry={me.reload} />;
  if (!me.data || !profile) return <Loading />;
  return (
    <section className="narrow">
      <h1>{t('account.title')}</h1>
      <p>
        {t('account.email')}: {me.data.email}
      </p>
      <form onSubmit={saveProfile} className="stack" aria-label={t('account.title')}>
        <Field label={t('account.name')} name="name" value={profile.name} onChange={(e) => setProfile({ ...profile, name: e.target.value })} error={profileState.error} required />
        <Field label={t('account.phone')} name="phone" type="tel" value={profile.phone ?? ''} onChange={(e) => setProfile({ ...profile, phone: e.target.value })} error={profileState.error} />
        <div className="field">
          <label htmlFor="account-locale">{t('account.language')}</label>
          <select id="account-locale" value={profile.locale} onChange={(e) => setProfile({ ...profile, locale: e.target.value })}>
            {LANGS.map((code) => (
              <option key={code} value={code}>
                {code === 'en' ? 'English' : '简体中文'}
              </option>
            ))}
          </select>
        </div>
        <ErrorMessage error={profileState.error} />
        {profileState.saved && <p role="status">{t('account.saved')}</p>}
        <button type="submit">{t('account.save')}</button>
      </form>
      <h2>{t('account.notifications')}</h2>
      <ErrorMessage error={prefs.error} onRetry={prefs.reload} />
      {channels && (
        <form onSubmit={savePrefs} className="stack" aria-label={t('account.notifications')}>
          <label className="inline">
            <input type="checkbox" checked={channels.email} onChange={(e) => setChannels({ ...channels, email: e.target.checked })} /> {t('account.byEmail')}
          </label>
          <label className="inline">
            <input type="checkbox" checked={channels.sms} onChange={(e) => setChannels({ ...channels, sms: e.target.checked })} /> {t('account.bySms')}
          </label>
          <ErrorMessage error={prefsState.error} />
          {prefsState.saved && <p role="status">{t('account.saved')}</p>}
          <button type="submit">{t('account.save')}</button>
        </form>
      )}
    </section>
  );
}
